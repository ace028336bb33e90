"""Dependencies shared by the routes: the opened instance and the caller's identity.

Authorisation is declared on each route with :func:`requires`; routes never check
roles with an ``if``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.apikeys import Principal, Role
from ledger.errors import PermissionDenied
from ledger.instance import Instance

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lsk_…`")


async def get_instance(request: Request) -> Instance:
    """The data dir opened at start-up."""
    instance: Instance = request.app.state.instance
    return instance


InstanceDep = Annotated[Instance, Depends(get_instance)]


async def get_principal(
    instance: InstanceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from its API key (401 problem+json without a valid one)."""
    return instance.apikeys.authenticate(credentials.credentials if credentials else None)


def requires(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits only callers holding one of ``roles``."""
    allowed = frozenset(roles)

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDenied(
                f"a {principal.role.value} key may not do this",
                hint=f"use a key with one of the roles: {names}",
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(requires(*Role))]
Writer = Annotated[Principal, Depends(requires(Role.admin, Role.member))]
DELIVERY_ROLES = (Role.admin, Role.delivery)
Delivery = Annotated[Principal, Depends(requires(*DELIVERY_ROLES))]
Auditor = Annotated[Principal, Depends(requires(Role.admin, Role.auditor))]


def own_member(principal: Principal, member: str, what: str) -> None:
    """Refuse acting on another member's ``what``."""
    if principal.member != member:
        raise PermissionDenied(
            f"{what} belongs to {member}; this key acts for {principal.member}",
            hint="use a key of the member that owns it",
        )
