"""An API client over a small consortium, with a key for every (member, role)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import Consortium, make_consortium

ROLES = ("admin", "member", "delivery", "auditor")


@dataclass
class Api:
    client: TestClient
    consortium: Consortium
    keys: dict[tuple[str, str], str]  # (member, role) -> key

    def headers(self, member: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[(member, role)]}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None) -> Iterator[Api]:
    """The service over a consortium, on SQLite and (marked postgres) on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp("api")
    consortium = make_consortium(data_dir, database_url=module_database_url)
    config = consortium.instance.config
    consortium.instance.close()
    app = create_app(config)
    with TestClient(app) as client:
        instance = app.state.instance
        keys = {
            (member, role): instance.apikeys.create(member, role)[0]
            for member in ("CN-A", "CN-B")
            for role in ROLES
        }
        consortium.instance = instance
        yield Api(client, consortium, keys)
