"""The live index: a user's online sessions, their count and the per-NAS counts stay right
through opens, closes, re-filing under another user and replacement, in any order."""

from __future__ import annotations

import random

from radtrack.model import Session
from radtrack.store.index import SessionIndex


def session(n: int, user_id: int | None, nas: str = "nas-a", start: float = 0.0) -> Session:
    return Session(
        f"id{n:04d}",
        f"{nas}/192.0.2.1",
        nas,
        "192.0.2.1",
        f"s{n}",
        start or 1_700_000_000.0 + n,
        1_700_000_000.0 + n,
        user_id=user_id,
        user_name=None if user_id is None else str(user_id),
    )


def ids(sessions: list[Session]) -> list[str]:
    return [s.id for s in sessions]


def test_user_sessions_oldest_first_and_counted() -> None:
    index = SessionIndex()
    for n in (3, 1, 2):
        index.add_online(session(n, 7))
    index.add_online(session(4, 8))
    assert ids(index.for_user(7)) == ["id0001", "id0002", "id0003"]
    assert index.count_for_user(7) == 3
    assert ids(index.for_user(8)) == ["id0004"]
    assert index.for_user(9) == [] and index.count_for_user(9) == 0
    assert index.per_nas == {"nas-a": 4}


def test_same_start_time_ordered_by_id() -> None:
    index = SessionIndex()
    for n in (5, 2, 9):
        index.add_online(session(n, 1, start=1_700_000_000.0))
    assert ids(index.for_user(1)) == ["id0002", "id0005", "id0009"]


def test_closing_first_middle_and_last_of_a_user() -> None:
    index = SessionIndex()
    sessions = [session(n, 7) for n in range(5)]
    for s in sessions:
        index.add_online(s)
    for gone in (sessions[2], sessions[4], sessions[0]):  # middle, newest added, oldest added
        gone.stop_time = gone.last_update
        index.close(gone)
    assert ids(index.for_user(7)) == ["id0001", "id0003"]
    assert index.count_for_user(7) == 2
    assert index.find("id0002") is sessions[2] and index.get("id0002") is None
    for s in (sessions[1], sessions[3]):
        index.close(s)
    assert index.for_user(7) == [] and index.count_for_user(7) == 0
    assert len(index) == 0 and not index.per_nas


def test_refiling_under_another_user() -> None:
    index = SessionIndex()
    a, b, c = session(1, 7), session(2, 7), session(3, None, nas="nas-b")
    for s in (a, b, c):
        index.add_online(s)
    index.set_user(a, 8)
    index.set_user(c, 8)
    assert ids(index.for_user(7)) == ["id0002"]
    assert ids(index.for_user(8)) == ["id0001", "id0003"]
    index.set_user(b, None)
    assert index.for_user(7) == [] and index.count_for_user(7) == 0
    assert index.per_nas == {"nas-a": 2, "nas-b": 1}  # re-filing never counts a session twice
    assert len(index) == 3


def test_adding_the_same_id_again_replaces_it() -> None:
    index = SessionIndex()
    first, again = session(1, 7), session(1, 7)
    index.add_online(first)
    index.add_online(session(2, 7))
    index.add_online(again)
    assert index.get("id0001") is again
    assert [s is again for s in index.for_user(7)] == [True, False]
    assert index.count_for_user(7) == 2 and index.per_nas == {"nas-a": 2}


def test_a_closed_session_reopened_is_filed_again() -> None:
    index = SessionIndex()
    s = session(1, 7)
    index.add_online(s)
    index.add_online(session(2, 7))
    s.stop_time = s.last_update
    index.close(s)
    s.stop_time = None
    index.add_online(s)  # the stale rule closed it, an Interim says it lives
    assert ids(index.for_user(7)) == ["id0001", "id0002"]
    assert index.count_for_user(7) == 2


def test_random_operations_match_a_plain_model() -> None:
    rng = random.Random(4)
    index = SessionIndex()
    model: dict[str, Session] = {}  # id -> online session
    pool = [session(n, rng.choice([None, 1, 2, 3])) for n in range(40)]
    for _ in range(3000):
        s = rng.choice(pool)
        action = rng.random()
        if action < 0.5:
            index.add_online(s)
            model[s.id] = s
        elif action < 0.8:
            index.close(s)
            model.pop(s.id, None)
        elif s.id in model:
            index.set_user(s, rng.choice([None, 1, 2, 3]))
        for user in (1, 2, 3):
            expected = sorted(
                (x for x in model.values() if x.user_id == user),
                key=lambda x: (x.start_time, x.id),
            )
            assert index.for_user(user) == expected
            assert index.count_for_user(user) == len(expected)
        assert len(index) == len(model)
        assert sum(index.per_nas.values()) == len(model)
