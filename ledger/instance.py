"""One libshare data directory, opened: chain, index, keys and the services over them.

The data directory holds everything an instance needs on the embedded default::

    <data-dir>/chain.sqlite      the in-process chain (absent when a JSON-RPC URL is used)
    <data-dir>/libshare.sqlite   the event index, usage trails and counters (SQLite)
    <data-dir>/deployment.json   where the consortium's contracts live on that chain
    <data-dir>/keys/             keystore v3 files: member account, patron and KEK keys
    <data-dir>/blocks/           the local blockstore (absent when an IPFS node is used)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eth_account.signers.local import LocalAccount
from sqlmodel import select
from web3 import Web3

from ledger.access import AccessService
from ledger.apikeys import ApiKeys
from ledger.blockstore import LocalBlockstore
from ledger.chain import Chain
from ledger.content import ContentStore
from ledger.errors import ChainUnavailable, ConfigError
from ledger.indexer import Indexer
from ledger.keys import STANDARD_SCRYPT_N, Keystore, MemberKeys
from ledger.onchain import CONTRACTS, ConsortiumContracts, Deployment
from ledger.store import Database, MemberRow

_log = logging.getLogger("libshare.instance")


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to open a data directory; built by ``api`` from settings."""

    data_dir: Path
    keystore_password: str
    chain_url: str | None = None  # None: the embedded chain in the data dir
    database_url: str | None = None  # None: SQLite in the data dir
    ipfs_api: str | None = None  # None: the local blockstore in the data dir
    confirmations: int = 0
    scrypt_n: int = STANDARD_SCRYPT_N
    anchor_every_entries: int = 1000
    anchor_every_seconds: float = 60.0
    peers_file: Path | None = None  # None: <data-dir>/peers.json (federation)
    federation_timeout_s: float = 10.0  # how long to wait for another member's instance


def _content_store(config: InstanceConfig) -> ContentStore:
    if config.ipfs_api:
        from ledger.kubo import KuboStore

        return KuboStore(config.ipfs_api)
    return LocalBlockstore(config.data_dir / "blocks")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Instance:
    """An opened data directory. Close it (or use ``with``) to flush the embedded chain."""

    def __init__(self, config: InstanceConfig, *, clock: Callable[[], datetime] = utc_now):
        self.config = config
        data_dir = config.data_dir
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"data dir {data_dir} is a file", hint="choose a directory")
        data_dir.mkdir(parents=True, exist_ok=True)
        deployment_file = data_dir / "deployment.json"
        chain_file = data_dir / "chain.sqlite"
        if config.chain_url is None:
            if deployment_file.exists() and not chain_file.exists():
                raise ConfigError(
                    f"{data_dir} records a deployment but its chain file chain.sqlite is missing",
                    hint="restore chain.sqlite, or pass the --rpc URL this data dir was used with",
                )
            self.chain = Chain.open_embedded(chain_file)
        else:
            self.chain = Chain.open_rpc(config.chain_url)
        self.db = Database(config.database_url or f"sqlite:///{data_dir / 'libshare.sqlite'}")
        self.content = _content_store(config)
        self.keystore = Keystore(
            data_dir / "keys", config.keystore_password, scrypt_n=config.scrypt_n
        )
        self.clock = clock
        self.access = AccessService(self.db, clock)
        self.apikeys = ApiKeys(self.db, clock)
        self._unlocked: dict[str, MemberKeys] = {}
        self._deployment_file = deployment_file
        self.contracts: ConsortiumContracts | None = None
        self.indexer: Indexer | None = None
        if deployment_file.exists():
            self.attach(Deployment.load(deployment_file))

    @property
    def deployed(self) -> bool:
        return self.contracts is not None

    def attach(self, deployment: Deployment) -> None:
        """Bind to a deployment, after checking it exists on this chain."""
        with self.chain.translate_errors():
            chain_id = int(self.chain.w3.eth.chain_id)
            for name in CONTRACTS:
                code = self.chain.w3.eth.get_code(
                    Web3.to_checksum_address(deployment.addresses[name])
                )
                if not code:
                    raise ConfigError(
                        f"{name} at {deployment.addresses[name]} has no code on the "
                        f"{self.chain.description}",
                        hint="this data dir was deployed on another chain; use its --rpc URL "
                        "or a new --data-dir",
                    )
        if chain_id != deployment.chain_id:
            raise ConfigError(
                f"the deployment was made on chain {deployment.chain_id}, the node is chain "
                f"{chain_id}",
                hint="point --rpc at the chain this data dir was deployed on",
            )
        self.contracts = ConsortiumContracts(self.chain, deployment)
        self.indexer = Indexer(
            self.chain, self.contracts, self.db, confirmations=self.config.confirmations
        )

    def record_deployment(self, contracts: ConsortiumContracts) -> None:
        contracts.deployment.save(self._deployment_file)
        self.attach(contracts.deployment)

    def member_keys(self, library_id: str) -> MemberKeys:
        """The unlocked keys of a member this instance serves (unlocked once, then kept)."""
        keys = self._unlocked.get(library_id)
        if keys is None:
            keys = self._unlocked[library_id] = self.keystore.load(library_id)
        return keys

    def served_members(self) -> dict[str, LocalAccount]:
        """Members of the consortium whose keys this instance holds, with their accounts."""
        with self.db.session() as session:
            members = {m.library_id for m in session.exec(select(MemberRow)).all()}
        return {
            library_id: self.member_keys(library_id).account
            for library_id in self.keystore.library_ids()
            if library_id in members
        }

    def require_contracts(self) -> ConsortiumContracts:
        if self.contracts is None:
            raise ConfigError(
                f"no consortium is deployed in {self.config.data_dir}",
                hint="run `libshare demo` (embedded) or deploy one first",
            )
        return self.contracts

    def sync(self) -> int:
        """Bring the index up to the chain; return the number of events applied."""
        if self.indexer is None:
            return 0
        return self.indexer.sync()

    def catch_up(self) -> None:
        """Sync if the chain answers; reads then serve the index as it is meanwhile."""
        try:
            self.sync()
        except ChainUnavailable as exc:
            _log.warning("index not synced, the chain is unavailable: %s", exc)

    def close(self) -> None:
        self.access.close()
        self.db.close()
        self.chain.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
