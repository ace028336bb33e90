"""The HTTP service answers from the index, and every error is RFC 9457 problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.settings import DEMO_PASSWORD
from ledger.instance import InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("api")
    env = {"LIBSHARE_DATABASE_URL": module_database_url} if module_database_url else {}
    result = CliRunner().invoke(
        cli, ["demo", "--data-dir", str(data_dir), "--checks", "5"], env=env
    )
    assert result.exit_code == 0, result.output
    config = InstanceConfig(
        data_dir, DEMO_PASSWORD, database_url=module_database_url, scrypt_n=LIGHT_SCRYPT_N
    )
    app = create_app(config)
    with TestClient(app) as test_client:
        token, _ = app.state.instance.apikeys.create("CN-XJTU", "auditor")
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_health_reports_the_chain_head_and_an_index_that_caught_up(client: TestClient) -> None:
    body = client.get("/v1/health").json()
    assert body["deployed"] is True
    assert body["indexed_block"] == body["chain_block"]


def test_members_lists_the_three_admitted_libraries_in_admission_order(
    client: TestClient,
) -> None:
    members = client.get("/v1/members").json()
    assert [m["library_id"] for m in members] == ["CN-XJTU", "CN-LZU", "CN-NWU"]
    assert [m["tier"] for m in members] == [1, 2, 3]


def test_an_unknown_path_is_a_problem_json_404_that_says_where_the_api_is(
    client: TestClient,
) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 404
    assert "/v1" in problem["detail"]
    assert set(problem) >= {"type", "title", "status", "detail"}


def test_a_wrong_method_is_a_problem_json_405(client: TestClient) -> None:
    response = client.post("/v1/members")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
