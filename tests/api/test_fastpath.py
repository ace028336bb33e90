"""The ordinary access check, answered before FastAPI's machinery, answers as the route does.

A body sent as ``application/vnd.libshare+json`` is one FastAPI parses as JSON (any
``+json`` type) but the fast path hands over, so it reaches the documented route: the two
can be compared.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from api.fastpath import LibshareApp
from tests.api.conftest import Api

VARYING = {"decision_id", "trail_seq", "decided_at", "content_url"}


def _body(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resource_id": api.consortium.resource_id,
        "requesting_member": "CN-B",
        "patron_id": "patron-fastpath",
        "patron_category": "faculty",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }
    body.update(overrides)
    return body


def _fast(api: Api, body: dict[str, Any], role: str = "delivery") -> httpx.Response:
    return api.client.post("/v1/access/check", json=body, headers=api.headers("CN-B", role))


def _route(api: Api, body: dict[str, Any], role: str = "delivery") -> httpx.Response:
    """The same request as a ``+json`` type: the fast path hands it to the route."""
    headers = {**api.headers("CN-B", role), "Content-Type": "application/vnd.libshare+json"}
    return api.client.post("/v1/access/check", content=json.dumps(body).encode(), headers=headers)


def _fast_count(api: Api) -> int:
    app = api.client.app
    assert isinstance(app, LibshareApp)
    return app.fast_checks


def test_an_allowed_check_is_answered_alike_by_both_paths(api: Api) -> None:
    before = _fast_count(api)
    fast = _fast(api, _body(api))
    assert _fast_count(api) == before + 1  # served by the fast path
    route = _route(api, _body(api))
    assert _fast_count(api) == before + 1  # handed over to the route
    assert fast.status_code == route.status_code == 200, (fast.text, route.text)
    assert fast.headers["content-type"] == route.headers["content-type"] == "application/json"
    a, b = fast.json(), route.json()
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in VARYING} == {
        k: v for k, v in b.items() if k not in VARYING
    }
    assert a["decision"] == "allow"
    assert b["trail_seq"] == a["trail_seq"] + 1  # both were recorded, one after the other
    assert a["content_url"] == f"/v1/access/{a['decision_id']}/content"
    assert a["decided_at"].endswith("Z") == b["decided_at"].endswith("Z")


def test_a_denial_is_answered_alike_by_both_paths(api: Api) -> None:
    body = _body(api, purpose="commercial")
    fast, route = _fast(api, body), _route(api, body)
    assert fast.status_code == route.status_code == 200
    assert fast.json()["reason"] == route.json()["reason"] == "purpose_not_allowed"
    assert fast.json()["content_url"] is route.json()["content_url"] is None


def test_an_unknown_resource_is_the_same_404_problem_from_both_paths(api: Api) -> None:
    body = _body(api, resource_id="0x" + "ab" * 32)
    fast, route = _fast(api, body), _route(api, body)
    assert fast.status_code == route.status_code == 404
    assert fast.headers["content-type"] == "application/problem+json"
    assert fast.json() == route.json()


def test_what_the_fast_path_does_not_serve_gets_the_apps_own_problem_answers(api: Api) -> None:
    cases = {
        "malformed JSON": (b'{"resource_id": ', api.headers("CN-B", "delivery"), 422),
        "a field missing": (
            json.dumps({"resource_id": "x"}).encode(),
            api.headers("CN-B", "delivery"),
            422,
        ),
        "a member key": (json.dumps(_body(api)).encode(), api.headers("CN-B", "member"), 403),
        "no key": (json.dumps(_body(api)).encode(), {}, 401),
        "a foreign member's patron": (
            json.dumps(_body(api, requesting_member="CN-A")).encode(),
            api.headers("CN-B", "delivery"),
            403,
        ),
        "an unknown purpose": (
            json.dumps(_body(api, purpose="gossip")).encode(),
            api.headers("CN-B", "delivery"),
            422,
        ),
    }
    for name, (content, headers, status) in cases.items():
        response = api.client.post(
            "/v1/access/check",
            content=content,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.json()["detail"], name


def test_a_handed_over_request_is_decided_once(api: Api) -> None:
    trail = api.consortium.instance.access.trail("CN-A")
    before = trail.head().size
    response = _route(api, _body(api, patron_id="patron-once"))
    assert response.status_code == 200
    assert trail.head().size == before + 1
    assert response.json()["trail_seq"] == before
