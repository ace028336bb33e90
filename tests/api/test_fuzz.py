"""Property-based fuzzing of every endpoint from the OpenAPI schema: no 5xx, ever.

Schemathesis generates requests from the app's own OpenAPI document — valid ones and
ones that break it — and each is sent with a writer's, a delivery and an auditor key and
with no key. Whatever comes in, the answer is below 500 and every error is problem+json.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from ledger.instance import InstanceConfig
from tests.conftest import make_consortium


def _labels() -> list[str]:
    # The OpenAPI document needs no consortium: read it from an app over an empty data dir.
    with tempfile.TemporaryDirectory(prefix="libshare-openapi-") as tmp:
        app = create_app(InstanceConfig(Path(tmp), "unused"))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        return sorted(op.ok().label for op in schema.get_all_operations())


LABELS = _labels()


@pytest.fixture(scope="module")
def fuzz(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """The running app's operations by label, and keys of several roles."""
    base = make_consortium(tmp_path_factory.mktemp("fuzz"), database_url=module_database_url)
    config = base.instance.config
    base.instance.close()
    app = create_app(config)
    with TestClient(app):  # runs the lifespan: the instance is open for the fuzzer's calls
        keys = app.state.instance.apikeys
        tokens = [
            keys.create("CN-A", "member")[0],
            keys.create("CN-B", "delivery")[0],
            keys.create("CN-B", "auditor")[0],
        ]
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = {op.ok().label: op.ok() for op in schema.get_all_operations()}
        yield operations, tokens


def test_every_route_is_fuzzed() -> None:
    assert "POST /v1/access/check" in LABELS
    assert "POST /v1/resources" in LABELS
    assert len(LABELS) >= 12


@pytest.mark.parametrize("label", LABELS)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_request_gets_a_server_error(
    fuzz: tuple[dict[str, Any], list[str]], label: str, data: st.DataObject
) -> None:
    operations, tokens = fuzz
    case = data.draw(operations[label].as_strategy())
    for token in (*tokens, None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = case.call(headers=headers)
        assert response.status_code < 500, (label, response.text)
        if response.status_code >= 400:
            content_type = response.headers[
                "content-type"
            ]  # schemathesis lists each header's values
            assert content_type == ["application/problem+json"], response.text
