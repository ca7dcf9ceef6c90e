"""The live view's event hub: every committed session change, to the subscribers that may see
it, without ever making ingest wait (radtrack/api/subscriptions.py carries them over
WebSocket; its docstring has the path of an event and the rules for slow subscribers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from radtrack.api.access import may_see
from radtrack.api.auth import Principal
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.logs import RateLimiter
from radtrack.model import ChangeKind, Session, SessionChange
from radtrack.store.index import UserDirectory

logger = logging.getLogger(__name__)

# the [api] subscription_queue default: events one subscriber may have waiting
QUEUE_SIZE = 1_000
TOO_SLOW = "Subscription ended: this client was too slow to read its events; subscribe again"
REVOKED = "Subscription ended: its token is no longer valid"


# -- events and the hub ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One committed change as subscribers see it: the session as its commit left it (publish
    runs after the commit, and changes committed together share that latest state)."""

    kind: ChangeKind
    session: Session
    reason: str | None  # close_reason, for STOPPED
    at: float  # by the NAS's clock: the start, the last update or the stop of the session


def event_of(change: SessionChange) -> SessionEvent:
    """An event with a snapshot of the session (the live record keeps changing afterwards)."""
    live = change.session
    snapshot = Session.from_row(live.row())
    snapshot.disconnecting = live.disconnecting
    if change.kind is ChangeKind.STOPPED:
        at = live.stop_time if live.stop_time is not None else live.last_update
        return SessionEvent(change.kind, snapshot, live.close_reason, at)
    at = live.start_time if change.kind is ChangeKind.STARTED else live.last_update
    return SessionEvent(change.kind, snapshot, None, at)


_DROPPED = object()  # the last item of a dropped subscriber's queue


class Subscription:
    """The events of one subscriber, in commit order; graphql-core maps each to a result.

    An async iterator rather than an async generator so that ``aclose`` releases it even when it
    was never iterated (an unstarted generator would skip its ``finally``).
    """

    def __init__(self, hub: EventHub, principal: Principal, user_id: int | None, size: int) -> None:
        self.hub = hub
        self.principal = principal
        self.user_id = user_id  # None: every user (admin only)
        self.queue: asyncio.Queue[object] = asyncio.Queue(size)
        self.closed = False
        self.ended = (ErrorCode.SERVICE_UNAVAILABLE, TOO_SLOW)  # the error a drop ends with

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> SessionEvent:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is _DROPPED:
            raise ApiError(*self.ended)
        assert isinstance(item, SessionEvent)
        return item

    async def aclose(self) -> None:
        self.hub.discard(self)

    def drop(self) -> None:
        """Too slow (or revoked): forget what is queued, end with ``ended`` at the next read."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_DROPPED)
        self.closed = True


class EventHub:
    """Fans committed session changes out to subscribers; ``publish`` is an AccountingService
    subscriber. ``published`` counts events queued to at least one subscriber, ``dropped`` the
    subscribers dropped as too slow."""

    def __init__(self, users: UserDirectory, queue_size: int = QUEUE_SIZE) -> None:
        self.users = users
        self.queue_size = queue_size  # read at subscribe time
        self._everyone: dict[Subscription, None] = {}  # ordered sets
        self._by_user: dict[int, dict[Subscription, None]] = {}
        self.published = 0
        self.dropped = 0
        self._warn = RateLimiter()
        self._loop: asyncio.AbstractEventLoop | None = None  # the subscribers' (deliver_on)

    def deliver_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Queue events on ``loop``, the subscribers' (the API's thread), while ``publish``
        runs on another (ingest's): it takes the snapshots there and hands them over."""
        self._loop = loop

    def __len__(self) -> int:
        return len(self._everyone) + sum(len(s) for s in self._by_user.values())

    def subscribe(self, principal: Principal, user_id: int | None) -> Subscription:
        subscription = Subscription(self, principal, user_id, self.queue_size)
        if user_id is None:
            self._everyone[subscription] = None
        else:
            self._by_user.setdefault(user_id, {})[subscription] = None
        return subscription

    def discard(self, subscription: Subscription) -> None:
        """Forget a subscriber (idempotent)."""
        subscription.closed = True
        if subscription.user_id is None:
            self._everyone.pop(subscription, None)
            return
        followers = self._by_user.get(subscription.user_id)
        if followers is not None:
            followers.pop(subscription, None)
            if not followers:
                del self._by_user[subscription.user_id]

    def revoke(self, still_valid: Callable[[Principal], bool]) -> int:
        """End the subscriptions whose token a reload removed; returns how many."""
        ended = [
            subscription
            for subscription in (*self._everyone, *(s for f in self._by_user.values() for s in f))
            if not still_valid(subscription.principal)
        ]
        for subscription in ended:
            self.discard(subscription)
            subscription.ended = (ErrorCode.UNAUTHENTICATED, REVOKED)
            subscription.drop()
        return len(ended)

    def publish(self, changes: Sequence[SessionChange]) -> None:
        """Queue each change for the subscribers that may see it; never blocks, never raises
        for a subscriber's sake (a full queue drops that subscriber)."""
        if not self._everyone and not self._by_user:
            return
        offers: list[tuple[Subscription, SessionEvent]] = []
        for change in changes:
            user_id = change.session.user_id
            followers = self._by_user.get(user_id) if user_id is not None else None
            if not self._everyone and not followers:
                continue
            event = event_of(change)
            self.published += 1
            for subscription in tuple(self._everyone):  # admins only (checked at subscribe)
                offers.append((subscription, event))
            if followers and user_id is not None:
                for subscription in tuple(followers):
                    # ownership can change after subscribing (upsertUsers): checked per event
                    if may_see(subscription.principal, user_id, self.users):
                        offers.append((subscription, event))
        if not offers:
            return
        if self._loop is None:
            self._offer_all(offers)
        else:
            self._loop.call_soon_threadsafe(self._offer_all, offers)

    def _offer_all(self, offers: list[tuple[Subscription, SessionEvent]]) -> None:
        for subscription, event in offers:
            if not subscription.closed:
                self._offer(subscription, event)

    def _offer(self, subscription: Subscription, event: SessionEvent) -> None:
        try:
            subscription.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.discard(subscription)
            subscription.drop()
            self.dropped += 1
            name = subscription.principal.name
            allowed, suppressed = self._warn.allow(name)
            if allowed:
                logger.warning(
                    "event=subscriber_dropped reason=too_slow token=%s user=%s queue=%d%s",
                    name,
                    "all" if subscription.user_id is None else subscription.user_id,
                    self.queue_size,
                    f" suppressed={suppressed}" if suppressed else "",
                )
