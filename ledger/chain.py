"""The chain connection: the embedded EVM or any EVM JSON-RPC endpoint, one interface.

:class:`Chain` signs every transaction locally with the sender's key (keystore v3 files
hold those keys at rest), sends it as a raw transaction, waits for its receipt and
turns every failure into a :mod:`ledger.errors` error: an unreachable node becomes
:class:`ChainUnavailable`, a revert becomes :class:`ContractReverted` carrying the
contract's decoded custom error. The same code path serves the in-process chain, a
Hardhat node and a consortium's Besu network.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils.exceptions import ValidationError as EthValidationError
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)
from web3.types import BlockIdentifier, Nonce, RPCEndpoint, TxParams, TxReceipt, Wei

from ledger.contracts import ALL_ABIS, decode_revert, load_artifact, revert_data_from
from ledger.embedded import EmbeddedChain
from ledger.errors import ChainError, ChainUnavailable, ContractReverted

RECEIPT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class RawLog:
    """One event log as the node gave it, undecoded."""

    address: str  # lower-case 0x-hex
    topics: tuple[bytes, ...]
    data: bytes
    block: int
    tx_hash: bytes


@dataclass(frozen=True)
class MinedTx:
    """A successful transaction's receipt, reduced to what bulk writers read."""

    tx_hash: bytes
    block: int
    gas_used: int
    logs: tuple[RawLog, ...]


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction not yet sent: the exact bytes to send, and their hash."""

    raw: bytes
    tx_hash: bytes
    nonce: int


class Chain:
    """A connection to one EVM chain, embedded or over JSON-RPC."""

    def __init__(
        self,
        w3: Web3,
        *,
        description: str,
        embedded: EmbeddedChain | None = None,
    ) -> None:
        self.w3 = w3
        self.description = description
        self._embedded = embedded
        self._lock = threading.RLock()

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open_embedded(cls, path: Path) -> Chain:
        """Open (or create) the in-process chain stored in the SQLite file ``path``."""
        embedded = EmbeddedChain(path)
        return cls(embedded.w3, description=f"embedded chain in {path}", embedded=embedded)

    @classmethod
    def open_rpc(cls, url: str, *, timeout_s: float = 10.0) -> Chain:
        """Connect to an EVM JSON-RPC endpoint; fails at once if it does not answer."""
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
        chain = cls(w3, description=f"JSON-RPC node at {url}")
        with chain.translate_errors():
            chain.w3.eth.chain_id  # noqa: B018 — a cheap call that proves the node answers
        return chain

    @property
    def is_embedded(self) -> bool:
        return self._embedded is not None

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.close()

    # -- errors --------------------------------------------------------------------

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn web3 and transport exceptions into libshare errors.

        On the embedded chain it also serialises every use: py-evm is not thread-safe, and
        the service reads and writes it from several threads.
        """
        guard = self._lock if self._embedded is not None else contextlib.nullcontext()
        with guard:
            try:
                yield
            except ChainError:
                raise  # already said in libshare's words (ChainUnavailable is a ConnectionError)
            except (requests.ConnectionError, requests.Timeout, ConnectionError, OSError) as exc:
                raise ChainUnavailable(
                    f"cannot reach the {self.description} ({type(exc).__name__})",
                    hint="check that the node is running and the URL is right (--rpc / "
                    "LIBSHARE_CHAIN_URL)",
                ) from exc
            except ContractLogicError as exc:
                raise _reverted(exc) from exc
            except TimeExhausted as exc:
                raise ChainUnavailable(
                    f"no receipt from the {self.description} within {RECEIPT_TIMEOUT_S:.0f} s",
                    hint="the node may be stalled; the transaction may still be mined later",
                ) from exc
            except Web3Exception as exc:
                raise ChainError(f"the {self.description} refused the request: {exc}") from exc

    # -- reading -------------------------------------------------------------------

    def contract(self, name: str, address: str) -> Contract:
        """The contract ``name`` (an artifact) at ``address``."""
        artifact = load_artifact(name)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    def call(self, fn: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
        """Run a view function and return its result."""
        with self._translate_refusals():
            return fn.call(block_identifier=block)

    def block_number(self) -> int:
        with self.translate_errors():
            return int(self.w3.eth.block_number)

    def logs(self, addresses: Sequence[str], start: int, end: int) -> list[RawLog]:
        """Every log ``addresses`` emitted in blocks ``start..end``, in chain order, raw.

        Over JSON-RPC the node's answer is parsed directly: web3's formatting of logs
        costs more than everything the indexer then does with them.
        """
        with self.translate_errors():
            if self._embedded is not None:
                checksummed = [Web3.to_checksum_address(a) for a in addresses]
                logs = self.w3.eth.get_logs(
                    {"address": checksummed, "fromBlock": start, "toBlock": end}
                )
                return [_formatted_log(log) for log in logs]
            query = {"address": list(addresses), "fromBlock": hex(start), "toBlock": hex(end)}
            return [_raw_log(log) for log in self._raw_request("eth_getLogs", [query])]

    # -- writing -------------------------------------------------------------------

    def transact(self, sender: LocalAccount, fn: ContractFunction) -> TxReceipt:
        """Sign ``fn`` with ``sender``'s key, send it, and return its successful receipt.

        Reverts are detected before sending (gas estimation runs the call) and raised as
        :class:`ContractReverted` with the contract's custom error decoded.
        """
        with self._lock, self._translate_refusals():
            params: TxParams = {
                "from": sender.address,
                "nonce": Nonce(self._next_nonce(sender.address)),
            }
            tx = fn.build_transaction(params)
            return self._send(sender, tx)

    def transact_many(
        self, sender: LocalAccount, calls: Sequence[ContractFunction], *, in_flight: int = 8
    ) -> list[MinedTx]:
        """:meth:`transact` for each of ``calls`` in order, up to ``in_flight`` unmined at once.

        Transactions take consecutive nonces and are sent without waiting for the one
        before to be mined, so a node that mines a block every few seconds takes several
        per block instead of one; the calls must not depend on each other. Each is checked
        by gas estimation before it is sent. The first failure, in the order of ``calls``
        (a revert found before sending, or a mined transaction that failed), is raised
        once every transaction already sent is mined; the calls before it stay on chain.
        """
        if in_flight < 1:
            raise ChainError(f"in_flight must be at least 1, got {in_flight}")
        mined: list[MinedTx] = []
        sent: deque[tuple[int, bytes, TxParams]] = deque()  # (position in calls, hash, tx)
        failures: list[tuple[int, ChainError]] = []  # (position in calls, error)
        with self._lock, self._translate_refusals():
            nonce = self._next_nonce(sender.address)
            chain_id = int(self.w3.eth.chain_id)
            for position, fn in enumerate(calls):
                if len(sent) >= in_flight and not self._settle(sent, mined, failures):
                    break
                try:
                    sent.append((position, *self._sign_and_send(sender, fn, nonce, chain_id)))
                except ChainError as exc:
                    failures.append((position, exc))
                    break
                nonce += 1
            while sent:
                self._settle(sent, mined, failures)
        if failures:
            raise min(failures, key=lambda failure: failure[0])[1]
        return mined

    def deploy(self, sender: LocalAccount, name: str, *args: Any) -> tuple[str, TxReceipt]:
        """Deploy the artifact ``name`` with constructor ``args``; return (address, receipt)."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        with self._lock, self._translate_refusals():
            params: TxParams = {
                "from": sender.address,
                "nonce": Nonce(self._next_nonce(sender.address)),
            }
            tx = factory.constructor(*args).build_transaction(params)
            receipt = self._send(sender, tx)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} produced no contract address")
        return str(address), receipt

    def send_value(self, sender: LocalAccount, to: str, wei: int) -> TxReceipt:
        """Send ``wei`` from ``sender`` to ``to``."""
        with self._lock, self._translate_refusals():
            tx: TxParams = {
                "from": sender.address,
                "to": Web3.to_checksum_address(to),
                "value": Wei(wei),
                "nonce": Nonce(self._next_nonce(sender.address)),
                "chainId": self.w3.eth.chain_id,
                "gas": 21_000,
            }
            fees = self._fees()
            tx.update(fees)  # type: ignore[typeddict-item]
            return self._send(sender, tx)

    def fund_from_node(self, to: str, wei: int) -> None:
        """Give ``to`` gas money from an account the node itself holds (dev chains only)."""
        with self._lock, self.translate_errors():
            if self._embedded is not None:
                source = self._embedded.faucet
            else:
                accounts = self.w3.eth.accounts
                if not accounts:
                    raise ChainError(
                        f"the {self.description} has no unlocked account to pay gas from",
                        hint="fund the member accounts yourself, then run again",
                    )
                source = accounts[0]
            tx_hash = self.w3.eth.send_transaction(
                {"from": source, "to": Web3.to_checksum_address(to), "value": Wei(wei)}
            )
            self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
            self._committed()

    def balance(self, address: str) -> int:
        with self.translate_errors():
            return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    # -- one step at a time (for the durable outbox) --------------------------------

    def pending_nonce(self, address: str) -> int:
        """The next nonce the node expects from ``address``, counting its pending transactions."""
        with self.translate_errors():
            return int(
                self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending")
            )

    def mined_nonce(self, address: str) -> int:
        """How many transactions from ``address`` the latest block includes."""
        with self.translate_errors():
            return int(
                self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "latest")
            )

    def sign_call(self, sender: LocalAccount, to: str, data: bytes, nonce: int) -> SignedTx:
        """Check, price and sign a call of ``data`` on ``to`` with ``nonce``; send nothing.

        The call runs first as an ``eth_call``, so a revert raises :class:`ContractReverted`
        (custom error decoded) before a nonce is spent on it.
        """
        with self._lock, self._translate_refusals():
            call: TxParams = {
                "from": sender.address,
                "to": Web3.to_checksum_address(to),
                "data": data,
                "value": Wei(0),
            }
            self.w3.eth.call(call)
            tx: TxParams = {
                **call,
                "nonce": Nonce(nonce),
                "chainId": self.w3.eth.chain_id,
                "gas": self.w3.eth.estimate_gas(call),
            }
            tx.update(self._fees())  # type: ignore[typeddict-item]
            signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
            return SignedTx(bytes(signed.raw_transaction), bytes(signed.hash), nonce)

    def send_raw(self, raw: bytes) -> bytes:
        """Send a signed transaction exactly as it is; return its hash without waiting.

        A node that refuses it (already known, nonce too low, underpriced...) raises
        :class:`ChainError` with the node's words; the caller decides from the receipt
        and the sender's nonce whether it is in anyway.
        """
        with self._lock, self._translate_refusals():
            tx_hash = self.w3.eth.send_raw_transaction(raw)
            self._committed()
            return bytes(tx_hash)

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        """The receipt of ``tx_hash``; None while it is not mined (or unknown to the node)."""
        with self.translate_errors():
            try:
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None

    def is_known(self, tx_hash: bytes) -> bool:
        """Whether the node holds ``tx_hash``, mined or waiting in its pool."""
        with self.translate_errors():
            try:
                self.w3.eth.get_transaction(HexBytes(tx_hash))
            except TransactionNotFound:
                return False
            return True

    def revert_of(self, sender: str, to: str, data: bytes, receipt: TxReceipt) -> ChainError:
        """Why the mined call of ``data`` on ``to`` failed (status 0), decoded by replaying it."""
        call: TxParams = {
            "from": Web3.to_checksum_address(sender),
            "to": Web3.to_checksum_address(to),
            "data": data,
        }
        try:
            with self._translate_refusals():
                return self._replay_revert(call, receipt)
        except ContractReverted as exc:
            return exc

    @contextmanager
    def _translate_refusals(self) -> Iterator[None]:
        """:meth:`translate_errors`, plus the in-process EVM's own ways of refusing."""
        with self.translate_errors():
            try:
                yield
            except TransactionFailed as exc:  # eth-tester's revert, not a web3 exception
                raise _reverted(exc) from exc
            except EthValidationError as exc:  # eth-tester's "nonce too low" and the like
                raise ChainError(f"the {self.description} refused the transaction: {exc}") from exc

    # -- internals -----------------------------------------------------------------

    def _fees(self) -> dict[str, int]:
        latest = self.w3.eth.get_block("latest")
        base = int(latest.get("baseFeePerGas", 0) or 0)
        tip = 1_000_000_000 if base else 0
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def _next_nonce(self, address: str) -> int:
        # The node's pending count is the truth: every send here waits for its receipt
        # (under the lock), so nothing of ours is in flight, and a reorganised chain is
        # never given a nonce from a history it no longer has.
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending"))

    def _send(self, sender: LocalAccount, tx: TxParams) -> TxReceipt:
        signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        self._committed()
        if receipt["status"] != 1:
            raise self._replay_revert(tx, receipt)
        return receipt

    def _replay_revert(self, tx: TxParams, receipt: TxReceipt) -> ChainError:
        """A mined transaction failed: replay it as a call to learn the custom error."""
        return self._replay_revert_at(tx, receipt["blockNumber"], bytes(receipt["transactionHash"]))

    def _replay_revert_at(self, tx: TxParams, block: int, tx_hash: bytes) -> ChainError:
        """Replay ``tx``, mined in ``block``, on the state before that block and, if it
        passes there (a transaction earlier in the same block changed what it met, as
        when several are in flight), on the state after it."""
        call: TxParams = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}  # type: ignore[assignment]
        for state in (block - 1, block):
            try:
                self.w3.eth.call(call, block_identifier=state)
            except ContractLogicError as exc:
                return _reverted(exc)
        return ChainError(f"transaction 0x{tx_hash.hex()} failed (status 0)")

    def _sign_and_send(
        self, sender: LocalAccount, fn: ContractFunction, nonce: int, chain_id: int
    ) -> tuple[bytes, TxParams]:
        """Estimate (so a revert raises here), price, sign and send ``fn``; no waiting."""
        with self._translate_refusals():
            tx: TxParams = {
                "from": sender.address,
                "to": Web3.to_checksum_address(str(fn.address)),
                "data": fn._encode_transaction_data(),  # web3 has no public encoder for this
                "value": Wei(0),
            }
            tx["gas"] = self.w3.eth.estimate_gas(tx)
            tx.update({"nonce": Nonce(nonce), "chainId": chain_id, **self._fees()})  # type: ignore[typeddict-item]
            signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
            self._committed()
            return tx_hash, tx

    def _settle(
        self,
        sent: deque[tuple[int, bytes, TxParams]],
        mined: list[MinedTx],
        failures: list[tuple[int, ChainError]],
    ) -> bool:
        """Wait for the oldest sent transaction; False (and a failure noted) if it failed."""
        position, tx_hash, tx = sent.popleft()
        try:
            with self._translate_refusals():
                status, result = self._wait_mined(tx_hash)
                if status != 1:
                    raise self._replay_revert_at(tx, result.block, tx_hash)
        except ChainError as exc:
            failures.append((position, exc))
            return False
        mined.append(result)
        return True

    def _wait_mined(self, tx_hash: bytes) -> tuple[int, MinedTx]:
        """The status and receipt of ``tx_hash``, polled until mined (within the timeout)."""
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        delay = 0.005
        while (found := self._mined_now(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise ChainUnavailable(
                    f"no receipt from the {self.description} within {RECEIPT_TIMEOUT_S:.0f} s",
                    hint="the node may be stalled; the transaction may still be mined later",
                )
            time.sleep(delay)
            delay = min(2 * delay, 0.5)
        self._committed()
        return found

    def _mined_now(self, tx_hash: bytes) -> tuple[int, MinedTx] | None:
        """The status and receipt of ``tx_hash`` if it is mined, without web3's formatters."""
        if self._embedded is not None:
            try:
                receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
            logs = tuple(_formatted_log(log) for log in receipt["logs"])
            return int(receipt["status"]), MinedTx(
                tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]), logs
            )
        raw = self._raw_request("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if raw is None:
            return None
        return int(raw["status"], 16), MinedTx(
            tx_hash,
            int(raw["blockNumber"], 16),
            int(raw["gasUsed"], 16),
            tuple(_raw_log(log) for log in raw["logs"]),
        )

    def _raw_request(self, method: str, params: list[Any]) -> Any:
        """A JSON-RPC call answered as the node sent it, bypassing web3's formatters.

        web3 formats results field by field (a checksum address per log): for a batch of
        200 events that takes longer than the node takes to run the transaction.
        """
        response = self.w3.provider.make_request(RPCEndpoint(method), params)
        error = response.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise ChainError(f"the {self.description} refused {method}: {message}")
        return response.get("result")

    def _committed(self) -> None:
        if self._embedded is not None:
            self._embedded.commit()


def _raw_log(log: dict[str, Any]) -> RawLog:
    """A log from a JSON-RPC answer (hex strings)."""
    return RawLog(
        str(log["address"]).lower(),
        tuple(bytes.fromhex(topic[2:]) for topic in log["topics"]),
        bytes.fromhex(log["data"][2:]),
        int(log["blockNumber"], 16),
        bytes.fromhex(log["transactionHash"][2:]),
    )


def _formatted_log(log: Any) -> RawLog:
    """A log as web3 formats it (the embedded chain's only form)."""
    return RawLog(
        str(log["address"]).lower(),
        tuple(bytes(topic) for topic in log["topics"]),
        bytes(log["data"]),
        int(log["blockNumber"]),
        bytes(log["transactionHash"]),
    )


def _reverted(exc: Exception) -> ContractReverted:
    data = revert_data_from(exc)
    decoded = decode_revert(ALL_ABIS(), data) if data else None
    if decoded is None:
        return ContractReverted("UnknownError", {"data": data or b"", "message": str(exc)})
    name, args = decoded
    return ContractReverted(name, args)


Opener = Callable[[], Chain]
