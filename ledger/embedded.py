"""The embedded chain: an in-process EVM (eth-tester / py-evm) whose state survives restarts.

py-evm keeps its whole state — every block, receipt and trie node — in one key-value
database. :class:`PersistentKV` is that database held in memory and mirrored to a
SQLite file: each write is remembered, and :meth:`PersistentKV.commit` writes the
remembered changes in one SQLite transaction. :class:`EmbeddedChain` commits after every
mined block, so a restart rebuilds the chain on the saved keys and resumes at the same
head block and hash, with the same contract addresses and state.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from eth.abc import SignedTransactionAPI, StateAPI
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
from eth.vm.spoof import SpoofTransaction
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from ledger.errors import ConfigError

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
_DELETED = None


class PersistentKV(MemoryDB):
    """py-evm's key-value store, in memory, mirrored to a SQLite file on :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)
            store = dict(self._conn.execute("SELECT k, v FROM kv"))
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"the embedded chain file {path} is unreadable ({exc})",
                hint="restore it from a backup or start over in a new --data-dir",
            ) from exc
        super().__init__(store)
        self._dirty: dict[bytes, bytes | None] = {}
        self._lock = threading.Lock()

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.kv_store[key] = value
        self._dirty[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.kv_store[key]
        self._dirty[key] = _DELETED

    @property
    def is_empty(self) -> bool:
        return not self.kv_store

    def replace_all(self, items: dict[bytes, bytes]) -> None:
        """Take over every key of another store (used once, to adopt a fresh genesis)."""
        for key, value in items.items():
            self[key] = value

    def commit(self) -> None:
        """Write every change since the last commit in one durable SQLite transaction."""
        with self._lock:
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, {}
            puts = [(k, v) for k, v in dirty.items() if v is not None]
            dels = [(k,) for k, v in dirty.items() if v is None]
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
                cur.executemany("DELETE FROM kv WHERE k = ?", dels)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                # keep the changes so a later commit retries them
                dirty.update(self._dirty)
                self._dirty = dirty
                raise

    def close(self) -> None:
        self.commit()
        self._conn.close()


class EmbeddedChain:
    """An in-process EVM chain stored in ``path`` (a SQLite file), served to web3."""

    def __init__(self, path: Path) -> None:
        self.kv = PersistentKV(path)
        backend = PyEVMBackend()
        fresh = backend.chain
        if self.kv.is_empty:
            # Adopt the freshly made genesis: copy its keys into the persistent store.
            self.kv.replace_all(dict(fresh.chaindb.db.wrapped_db.kv_store))
            self.kv.commit()
        # Rebuild the chain object on the persistent store; py-evm reads the canonical
        # head from the database, so a restart resumes at the same block and hash.
        backend.chain = type(fresh)(AtomicDB(self.kv))
        backend.chain.gas_estimator = estimate_gas
        self.backend = backend
        self.tester = EthereumTester(backend)
        self.w3 = Web3(EthereumTesterProvider(self.tester))

    @property
    def faucet(self) -> str:
        """An account funded at genesis, used to pay gas for local member accounts."""
        return str(self.tester.get_accounts()[0])

    def commit(self) -> None:
        """Make everything mined so far durable."""
        self.kv.commit()

    def close(self) -> None:
        self.kv.close()

    def __enter__(self) -> EmbeddedChain:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


GAS_MARGIN = 1.25
"""Head-room over the gas one run used: an inner call may be given only 63/64 of what is
left (EIP-150), and the margin covers that at any depth our contracts reach."""


def estimate_gas(state: StateAPI, transaction: SignedTransactionAPI) -> int:
    """The gas ``transaction`` needs, in two runs instead of py-evm's dozen.

    py-evm's default estimator bisects the block's gas limit, running the transaction
    about twelve times; on the embedded chain each anchor or registration paid that in
    the server's own interpreter. Here one run at the block limit measures the gas used
    (raising its error if it fails even then), and a second run checks that the used gas
    plus :data:`GAS_MARGIN` suffices; only if it did not would the bisection run. Unused
    gas is refunded, so the margin costs the sender nothing.
    """
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(
            SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)  # type: ignore[arg-type]
        )
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise computation.error
    used = transaction.intrinsic_gas + computation.get_gas_used()
    estimate = min(state.gas_limit, int(used * GAS_MARGIN) + 10_000)
    snapshot = state.snapshot()
    try:
        check = state.apply_transaction(
            SpoofTransaction(transaction, gas=estimate, gas_price=0)  # type: ignore[arg-type]
        )
    finally:
        state.revert(snapshot)
    if not check.is_error:
        return estimate
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))
