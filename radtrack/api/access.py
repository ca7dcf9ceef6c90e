"""Who may see what: the access rules every resolver and the event hub apply.

An admin token sees every user and every session. A reseller token sees the users that the users
table gives its reseller_id, and their sessions; a session with no user id is for admins only.
Anything else sees nothing. Resolvers ask here and never decide themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import GraphQLResolveInfo

from radtrack.api.auth import Principal
from radtrack.api.backend import Backend
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.api.settings import RESELLER
from radtrack.model import Session
from radtrack.store.index import UserDirectory


@dataclass(frozen=True, slots=True)
class RequestContext:
    """``info.context`` of every resolver: who asks, and the live state they ask about."""

    principal: Principal
    backend: Backend


def may_see(principal: Principal, user_id: int, users: UserDirectory) -> bool:
    """Admin sees every user; a reseller only the users it owns in the users table."""
    if principal.is_admin:
        return True
    if RESELLER in principal.scopes and principal.reseller_id is not None:
        return users.reseller_of(user_id) == principal.reseller_id
    return False


def may_see_session(principal: Principal, session: Session, users: UserDirectory) -> bool:
    if principal.is_admin:
        return True
    return session.user_id is not None and may_see(principal, session.user_id, users)


def visible_user(info: GraphQLResolveInfo, user_id: int) -> Backend:
    """The backend, for a resolver about ``user_id``; BAD_USER_INPUT or FORBIDDEN otherwise."""
    context: RequestContext = info.context
    if user_id < 0:
        raise ApiError(ErrorCode.BAD_USER_INPUT, "userId must be 0 or more")
    if not may_see(context.principal, user_id, context.backend.users):
        raise ApiError(ErrorCode.FORBIDDEN, "This token may not see that user")
    return context.backend


def require_admin(info: GraphQLResolveInfo, refusal: str) -> RequestContext:
    """The context, for a resolver only admins may use; FORBIDDEN with ``refusal`` otherwise."""
    context: RequestContext = info.context
    if not context.principal.is_admin:
        raise ApiError(ErrorCode.FORBIDDEN, refusal)
    return context
