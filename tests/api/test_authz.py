"""The authorisation matrix: every route, every role, own and foreign member.

CN-A owns the licence and the resource; "own" calls use CN-A's keys (or, for access
checks, ask for CN-A's own patrons), "foreign" calls use CN-B's keys on CN-A's things
(or ask for another member's patrons). Each cell is the status the API must answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ledger.licence import consortium_terms
from ledger.licence_json import terms_to_json
from tests.api.conftest import ROLES, Api

TERMS = terms_to_json(consortium_terms())


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: Callable[[Api], str]
    body: Callable[[Api, str], dict[str, Any] | None]
    own: dict[str, int]  # role -> status when acting on its own member's things
    foreign: dict[str, int]  # role -> status when acting on another member's things
    multipart: bool = False


READ_ALL = dict.fromkeys(ROLES, 200)
WRITERS_ONLY = {"admin": 201, "member": 201, "delivery": 403, "auditor": 403}
NOBODY = dict.fromkeys(ROLES, 403)


def _fresh_licence(api: Api) -> str:
    response = api.client.post(
        "/v1/licences", json={"terms": TERMS}, headers=api.headers("CN-A", "member")
    )
    assert response.status_code == 201, response.text
    return f"/v1/licences/{response.json()['licence_id']}"


def _check_body(api: Api, requester: str) -> dict[str, Any]:
    return {
        "resource_id": api.consortium.resource_id,
        "requesting_member": requester,
        "patron_id": "patron-7",
        "patron_category": "faculty",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }


def _resource_form(api: Api, member: str) -> dict[str, Any]:
    return {
        "media_type": "text",
        "metadata": json.dumps({"title": f"Authz probe {uuid.uuid4()}"}),
    }


ROUTES = [
    Route("list members", "GET", lambda a: "/v1/members", lambda a, m: None, READ_ALL, READ_ALL),
    Route(
        "read a licence", "GET", lambda a: f"/v1/licences/{a.consortium.licence_id}",
        lambda a, m: None, READ_ALL, READ_ALL,
    ),
    Route(
        "issue a licence", "POST", lambda a: "/v1/licences",
        lambda a, m: {"terms": TERMS}, WRITERS_ONLY, WRITERS_ONLY,
    ),
    Route(
        "add a licence version", "POST", lambda a: _fresh_licence(a) + "/versions",
        lambda a, m: {"terms": TERMS}, WRITERS_ONLY, NOBODY,
    ),
    Route(
        "revoke a licence", "POST", lambda a: _fresh_licence(a) + "/revoke",
        lambda a, m: None, {"admin": 200, "member": 200, "delivery": 403, "auditor": 403}, NOBODY,
    ),
    Route(
        "check access", "POST", lambda a: "/v1/access/check", _check_body,
        {"admin": 200, "member": 403, "delivery": 200, "auditor": 403}, NOBODY,
    ),
    Route(
        "read a resource", "GET", lambda a: f"/v1/resources/{a.consortium.resource_id}",
        lambda a, m: None, READ_ALL, READ_ALL,
    ),
    Route(
        "register a resource", "POST", lambda a: "/v1/resources", _resource_form,
        WRITERS_ONLY, WRITERS_ONLY, multipart=True,
    ),
]  # fmt: skip

CASES = [
    pytest.param(route, role, side, id=f"{route.name}-{role}-{side}")
    for route in ROUTES
    for role in ROLES
    for side in ("own", "foreign")
]


def _send(api: Api, route: Route, member: str, headers: dict[str, str]) -> Any:
    body = route.body(api, member)
    if route.multipart:
        files = {"file": ("probe.txt", str(uuid.uuid4()).encode(), "text/plain")}
        return api.client.request(
            route.method, route.path(api), data=body, files=files, headers=headers
        )
    return api.client.request(route.method, route.path(api), json=body, headers=headers)


@pytest.mark.parametrize(("route", "role", "side"), CASES)
def test_route_answers_each_role_as_the_matrix_says(
    api: Api, route: Route, role: str, side: str
) -> None:
    key_member = "CN-A" if side == "own" or route.name == "check access" else "CN-B"
    # For access checks "foreign" means asking on behalf of another member's patrons.
    body_member = "CN-A" if side == "own" else "CN-B"
    if route.name == "check access":
        key_member = "CN-A"
    expected = (route.own if side == "own" else route.foreign)[role]
    response = _send(api, route, body_member, api.headers(key_member, role))
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_every_route_but_health_refuses_a_missing_key_with_401(api: Api, route: Route) -> None:
    response = _send(api, route, "CN-A", {})
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    instance = api.consortium.instance
    token, principal = instance.apikeys.create("CN-B", "auditor")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/members", headers=headers).status_code == 200
    instance.apikeys.revoke(principal.key_id)
    assert api.client.get("/v1/members", headers=headers).status_code == 401


def test_a_key_with_a_wrong_secret_is_refused(api: Api) -> None:
    token = api.keys[("CN-A", "admin")]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = api.client.get("/v1/members", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
