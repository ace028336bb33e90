"""Shared fixtures: a small consortium on the embedded chain, set up once per module, and
the databases the tests run on.

Database-backed tests run twice: on SQLite and, marked ``postgres``, on the PostgreSQL
server that ``LIBSHARE_TEST_DATABASE`` names (``.ci/services.sh`` starts one; locally,
``python scripts/postgres_cluster.py start --dir /tmp/pg`` prints a URL to set it to).
A test takes ``database_url`` (a fresh database per test) or ``module_database_url``
(one per module): None means SQLite in the data dir, otherwise it is the URL of a new,
migrated PostgreSQL database, dropped afterwards. Without the variable the PostgreSQL
runs skip locally and fail in CI (CI set); ``-m "not postgres"`` leaves them out.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N, MemberKeys
from ledger.licence import Campaign, Fee, consortium_terms
from ledger.onchain import ConsortiumContracts, FounderInput
from ledger.registration import NewResource, issue_licence, register_resources
from ledger.store import Database

PASSWORD = "test-password"

# -- databases ---------------------------------------------------------------------------

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class PostgresServer:
    """The server ``LIBSHARE_TEST_DATABASE`` names, handing out fresh databases.

    Each is a copy of a template migrated once per session (``CREATE DATABASE … TEMPLATE``
    takes tens of milliseconds), so every test starts from an empty schema at head.
    """

    base: URL
    admin: Engine
    prefix: str = field(default_factory=lambda: f"libshare_test_{os.getpid()}")
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def template(self) -> str:
        return f"{self.prefix}_template"

    def url(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def make_template(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
        self._execute(f"CREATE DATABASE {self.template}")
        Database(self.url(self.template)).close()  # migrates it to head

    def create(self) -> str:
        """A new database at the newest schema revision; its URL."""
        name = f"{self.prefix}_{next(self._numbers)}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The test server; skip (locally) or fail (CI) when LIBSHARE_TEST_DATABASE is not set."""
    given = os.environ.get("LIBSHARE_TEST_DATABASE")
    if not given:
        if os.environ.get("CI"):
            pytest.fail("LIBSHARE_TEST_DATABASE is not set: .ci/services.sh must start PostgreSQL")
        pytest.skip(
            "no PostgreSQL server (set LIBSHARE_TEST_DATABASE, e.g. to the URL that "
            "`python scripts/postgres_cluster.py start --dir /tmp/pg` prints)"
        )
    base = make_url(given)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10})
    server = PostgresServer(base, admin)
    try:
        server.make_template()
    except Exception as exc:
        admin.dispose()
        shown = base.render_as_string(hide_password=True)
        pytest.fail(f"LIBSHARE_TEST_DATABASE={shown} is set but the server does not serve: {exc}")
    try:
        yield server
    finally:
        server.drop(server.url(server.template))
        admin.dispose()


def _fresh_database(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database the module's tests run on this time: "sqlite" or "postgres"."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """One fresh database for the module: None (SQLite in the data dir) or a PostgreSQL URL."""
    yield from _fresh_database(backend, request)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A fresh database for the test: None (SQLite in the data dir) or a PostgreSQL URL."""
    yield from _fresh_database(backend, request)


# -- a small consortium ------------------------------------------------------------------


@dataclass
class Consortium:
    instance: Instance
    admin: MemberKeys
    members: dict[str, MemberKeys]
    licence_id: int
    resource_id: str  # owned by CN-A, under licence_id
    unlicensed_id: str  # owned by CN-A, no licence


def make_consortium(
    data_dir: Path, *, rpc_url: str | None = None, database_url: str | None = None
) -> Consortium:
    """CN-A (tier 1) and CN-B (tier 2); CN-A licenses one resource under the consortium rules.

    On the embedded chain unless ``rpc_url`` names a JSON-RPC node; on SQLite in the data
    dir unless ``database_url`` names another database.
    """
    instance = Instance(
        InstanceConfig(
            data_dir,
            PASSWORD,
            chain_url=rpc_url,
            database_url=database_url,
            scrypt_n=LIGHT_SCRYPT_N,
        )
    )
    admin = instance.keystore.create("ADMIN")
    members = {lib: instance.keystore.create(lib) for lib in ("CN-A", "CN-B")}
    for keys in (admin, *members.values()):
        instance.chain.fund_from_node(keys.account.address, 10**20)
    founders = [
        FounderInput("CN-A", 1, "CN", members["CN-A"].account.address),
        FounderInput("CN-B", 2, "CN", members["CN-B"].account.address),
    ]
    contracts = ConsortiumContracts.deploy(instance.chain, admin.account, founders, 1)
    instance.record_deployment(contracts)
    now = datetime.now(UTC)
    day = timedelta(days=1)
    terms = consortium_terms(
        valid_from=now - 10 * day,
        valid_until=now + 300 * day,
        campaigns=(Campaign("free-month", now - day, now + 20 * day, True),),
        fee=Fee(1500, "CNY"),
    )
    licence_id, _ = issue_licence(instance, members["CN-A"].account, terms)
    licensed, unlicensed = register_resources(
        instance,
        members["CN-A"],
        [
            NewResource(b"a rare book", "text", {"title": "Rare book"}, licence_id),
            NewResource(b"an unlicensed thesis", "text", {"title": "Thesis"}, 0),
        ],
    )
    return Consortium(
        instance, admin, members, licence_id, licensed.resource_id, unlicensed.resource_id
    )


def record_checks(c: Consortium, n: int, *, start: int = 0) -> None:
    """Decide ``n`` allowed single-chapter copies of CN-A's resource for CN-B's patrons
    ``start`` … ``start + n - 1`` (pseudonyms made up here): ``n`` entries in CN-A's trail."""
    for i in range(start, start + n):
        c.instance.access.check(
            resource_id=c.resource_id,
            requesting_member="CN-B",
            patron=f"{i:064x}",
            patron_category="staff",
            purpose="teaching",
            method="copy",
            scope="part",
            destination_country="CN",
        )


@pytest.fixture(scope="module")
def consortium(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[Consortium]:
    c = make_consortium(tmp_path_factory.mktemp("consortium"), database_url=module_database_url)
    try:
        yield c
    finally:
        c.instance.close()
