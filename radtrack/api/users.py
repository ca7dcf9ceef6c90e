"""The users table over GraphQL: the upsertUsers mutation (admin tokens only)."""

from __future__ import annotations

from typing import Any

from ariadne import MutationType
from graphql import GraphQLResolveInfo

from radtrack.api.access import require_admin
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.api.limits import MAX_UPSERT_USERS
from radtrack.errors import StoreError, UsernameTaken
from radtrack.model import User

MAX_USERNAME = 253  # the longest RADIUS attribute value (RFC 2865 §5)

mutation = MutationType()


@mutation.field("upsertUsers")
async def resolve_upsert_users(
    _: None, info: GraphQLResolveInfo, users: list[dict[str, Any]]
) -> dict[str, int]:
    context = require_admin(info, "upsertUsers needs an admin token")
    records = users_from_input(users)
    try:
        await context.backend.upsert_users(records)
    except UsernameTaken as taken:
        raise ApiError(
            ErrorCode.USERNAME_TAKEN,
            f"users[{taken.index}]: username {taken.username!r} belongs to userId {taken.owner}; "
            f"to move it to userId {taken.user_id}, give userId {taken.owner} another username "
            "(or none) in the same call. Nothing was written.",
        ) from None
    except StoreError:
        raise ApiError(
            ErrorCode.SERVICE_UNAVAILABLE, "The users could not be stored; try again later"
        ) from None
    return {"upserted": len(records)}


def users_from_input(items: list[dict[str, Any]]) -> list[User]:
    """UserInput values -> User records; raises ApiError(BAD_USER_INPUT) naming the entry."""
    if len(items) > MAX_UPSERT_USERS:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT, f"At most {MAX_UPSERT_USERS} users per call, not {len(items)}"
        )
    records: list[User] = []
    ids: set[int] = set()
    names: set[str] = set()
    for i, item in enumerate(items):
        user = User(
            user_id=item["user_id"],
            username=item.get("username"),
            reseller_id=item.get("reseller_id"),
            max_sessions=item.get("max_sessions"),
        )
        problem = _user_problem(user, ids, names)
        if problem:
            raise ApiError(ErrorCode.BAD_USER_INPUT, f"users[{i}]: {problem}")
        ids.add(user.user_id)
        if user.username is not None:
            names.add(user.username)
        records.append(user)
    return records


def _user_problem(user: User, ids: set[int], names: set[str]) -> str | None:
    if user.user_id < 0:
        return "userId must be 0 or more"
    if user.user_id in ids:
        return f"userId {user.user_id} appears twice"
    if user.username is not None:
        if not user.username or len(user.username.encode()) > MAX_USERNAME:
            return f"username must be 1 to {MAX_USERNAME} bytes"
        if user.username in names:
            return "the same username appears twice"
    if user.reseller_id is not None and user.reseller_id < 0:
        return "resellerId must be 0 or more"
    if user.max_sessions is not None and user.max_sessions < 0:
        return "maxSessions must be 0 or more"
    return None


bindables = (mutation,)
