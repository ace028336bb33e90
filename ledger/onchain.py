"""Typed calls to the four consortium contracts.

Each method here is one contract function: it takes libshare values, sends the signed
transaction through :class:`ledger.chain.Chain`, and returns what the contract decided
(ids, versions) read from the receipt's events. Reads for the hot path go to the SQL
index instead (see :mod:`ledger.indexer`); the reads here serve audits and deployment.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from ledger.chain import Chain, MinedTx, RawLog
from ledger.errors import ChainError, ConfigError, InvalidInput

CONTRACTS = ("Consortium", "LicenceRegistry", "ResourceRegistry", "TrailAnchor")

BATCH_SIZE = 200
"""Resources per registerBatch transaction: ~28k gas each, so ~5.7M gas a transaction."""
IN_FLIGHT = 8
"""registerBatch transactions sent ahead of their receipts."""

RELATIONS = {"digitised_from": 1, "derived_from": 2, "supersedes": 3, "contributed_by": 4}
"""Provenance relations, numbered as ResourceRegistry.Relation."""


@dataclass(frozen=True)
class Deployment:
    """Where the consortium's contracts live on one chain."""

    chain_id: int
    block: int
    addresses: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            raw = json.loads(path.read_text())
            deployment = cls(int(raw["chain_id"]), int(raw["block"]), dict(raw["addresses"]))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no consortium deployment recorded in {path}",
                hint="run `libshare demo` or `libshare deploy` first",
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the deployment file {path} is damaged ({exc})") from exc
        missing = [name for name in CONTRACTS if name not in deployment.addresses]
        if missing:
            raise ConfigError(f"the deployment file {path} lacks {', '.join(missing)}")
        return deployment


@dataclass(frozen=True)
class FounderInput:
    library_id: str
    tier: int
    country: str
    account: str

    def as_tuple(self) -> tuple[str, int, bytes, str]:
        return (self.library_id, self.tier, _country(self.country), self.account)


@dataclass(frozen=True)
class ResourceInput:
    """What a member registers for one resource."""

    content_hash: bytes  # sha-256 of the plaintext
    cid: bytes  # binary CID of what is stored
    metadata_hash: bytes  # sha-256 of the canonical metadata JSON
    licence_id: int
    links: tuple[tuple[str, bytes], ...] = ()  # (relation name, bytes32 target)

    def as_tuple(self) -> tuple[bytes, bytes, bytes, int, list[tuple[int, bytes]]]:
        """The ABI tuple ``register`` and ``supersede`` take."""
        links = [(_relation(relation), target) for relation, target in self.links]
        return (self.content_hash, self.cid, self.metadata_hash, self.licence_id, links)

    def packed(self) -> bytes:
        """The entry ``registerBatch`` takes: a third of the calldata of :meth:`as_tuple`.

        contentHash (32 bytes), metadataHash (32), licenceId (uint32), the CID's length
        (uint16), the CID, the number of links (uint8), then per link its relation (uint8)
        and target (32); integers big-endian, as ResourceRegistry.registerBatch reads them.
        """
        for name, value in (
            ("content hash", self.content_hash),
            ("metadata hash", self.metadata_hash),
        ):
            if len(value) != 32:
                raise InvalidInput(f"the {name} has {len(value)} bytes, expected 32")
        if not 0 <= self.licence_id < 1 << 32:
            raise InvalidInput(f"licence id {self.licence_id} does not fit 32 bits")
        if len(self.cid) >= 1 << 16:
            raise InvalidInput(f"a CID of {len(self.cid)} bytes is too long to register")
        if len(self.links) >= 1 << 8:
            raise InvalidInput(
                f"a resource can be registered with at most 255 links, not {len(self.links)}"
            )
        parts = [
            self.content_hash,
            self.metadata_hash,
            _PACKED_HEAD.pack(self.licence_id, len(self.cid)),
            self.cid,
            bytes([len(self.links)]),
        ]
        for relation, target in self.links:
            if len(target) != 32:
                raise InvalidInput(f"a link target has {len(target)} bytes, expected 32")
            parts += [bytes([_relation(relation)]), target]
        return b"".join(parts)


_PACKED_HEAD = struct.Struct(">IH")  # licenceId, CID length
_RESOURCE_REGISTERED = keccak(
    text="ResourceRegistered(bytes32,address,bytes32,bytes,bytes32,uint256)"
)


def resource_ids_of(owner: str, content_hashes: Iterable[bytes]) -> list[bytes]:
    """The ids ResourceRegistry gives: keccak256(abi.encode(owner, contentHash)) each."""
    owner_word = bytes(12) + bytes.fromhex(Web3.to_checksum_address(owner)[2:])
    return [keccak(owner_word + content_hash) for content_hash in content_hashes]


def _relation(name: str) -> int:
    if name not in RELATIONS:
        raise InvalidInput(
            f"unknown provenance relation {name!r}", hint=f"use one of {', '.join(RELATIONS)}"
        )
    return RELATIONS[name]


@dataclass(frozen=True)
class AnchoredHead:
    member: str
    size: int
    root: bytes
    block: int
    tx_hash: str


class ConsortiumContracts:
    """The four contracts of one deployment, over one chain connection."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        self.chain = chain
        self.deployment = deployment
        self.consortium = chain.contract("Consortium", deployment.addresses["Consortium"])
        self.licences = chain.contract("LicenceRegistry", deployment.addresses["LicenceRegistry"])
        self.resources = chain.contract(
            "ResourceRegistry", deployment.addresses["ResourceRegistry"]
        )
        self.trail = chain.contract("TrailAnchor", deployment.addresses["TrailAnchor"])

    def by_name(self) -> dict[str, Contract]:
        return {
            "Consortium": self.consortium,
            "LicenceRegistry": self.licences,
            "ResourceRegistry": self.resources,
            "TrailAnchor": self.trail,
        }

    # -- deployment ------------------------------------------------------------------

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        admin: LocalAccount,
        founders: Sequence[FounderInput],
        approvals_required: int,
    ) -> ConsortiumContracts:
        """Deploy the consortium with its founding members; return the bound contracts."""
        consortium, receipt = chain.deploy(
            admin, "Consortium", approvals_required, [f.as_tuple() for f in founders]
        )
        licences, _ = chain.deploy(admin, "LicenceRegistry", consortium)
        resources, _ = chain.deploy(admin, "ResourceRegistry", consortium, licences)
        trail, _ = chain.deploy(admin, "TrailAnchor", consortium)
        with chain.translate_errors():
            chain_id = int(chain.w3.eth.chain_id)
        deployment = Deployment(
            chain_id=chain_id,
            block=int(receipt["blockNumber"]),
            addresses={
                "Consortium": consortium,
                "LicenceRegistry": licences,
                "ResourceRegistry": resources,
                "TrailAnchor": trail,
            },
        )
        return cls(chain, deployment)

    # -- governance ------------------------------------------------------------------

    def propose_admission(self, proposer: LocalAccount, candidate: FounderInput) -> int:
        receipt = self.chain.transact(
            proposer, self.consortium.functions.proposeAdmission(candidate.as_tuple())
        )
        (ev,) = self.consortium.events.AdmissionProposed().process_receipt(receipt)
        return int(ev["args"]["proposalId"])

    def approve_admission(self, approver: LocalAccount, proposal_id: int) -> None:
        self.chain.transact(approver, self.consortium.functions.approveAdmission(proposal_id))

    def execute_admission(self, executor: LocalAccount, proposal_id: int) -> None:
        self.chain.transact(executor, self.consortium.functions.executeAdmission(proposal_id))

    def is_member(self, account: str) -> bool:
        return bool(
            self.chain.call(self.consortium.functions.isMember(Web3.to_checksum_address(account)))
        )

    # -- licences --------------------------------------------------------------------

    def issue_licence(
        self, licensor: LocalAccount, terms_hash: bytes, terms_json: str
    ) -> tuple[int, int]:
        """Issue a new licence (version 1); return (licence id, version)."""
        receipt = self.chain.transact(
            licensor, self.licences.functions.issue(terms_hash, terms_json)
        )
        return self._issued(receipt)

    def issue_licence_version(
        self, licensor: LocalAccount, licence_id: int, terms_hash: bytes, terms_json: str
    ) -> tuple[int, int]:
        receipt = self.chain.transact(
            licensor, self.licences.functions.issueVersion(licence_id, terms_hash, terms_json)
        )
        return self._issued(receipt)

    def revoke_licence(self, licensor: LocalAccount, licence_id: int) -> int:
        """Revoke a licence; return the block it was revoked in."""
        receipt = self.chain.transact(licensor, self.licences.functions.revoke(licence_id))
        return int(receipt["blockNumber"])

    def _issued(self, receipt: TxReceipt) -> tuple[int, int]:
        (ev,) = self.licences.events.LicenceIssued().process_receipt(receipt)
        return int(ev["args"]["licenceId"]), int(ev["args"]["version"])

    # -- resources -------------------------------------------------------------------

    def register_resources(
        self,
        owner: LocalAccount,
        items: Sequence[ResourceInput],
        *,
        batch_size: int = BATCH_SIZE,
        in_flight: int = IN_FLIGHT,
    ) -> list[bytes]:
        """Register ``items`` in packed batches; return their resource ids in order."""
        done = self.register_resources_mined(
            owner, items, batch_size=batch_size, in_flight=in_flight
        )
        return [rid for ids, _ in done for rid in ids]

    def register_resources_mined(
        self,
        owner: LocalAccount,
        items: Sequence[ResourceInput],
        *,
        batch_size: int = BATCH_SIZE,
        in_flight: int = IN_FLIGHT,
    ) -> list[tuple[list[bytes], MinedTx]]:
        """Register ``items`` in packed batches; return each batch's ids and transaction.

        Up to ``in_flight`` batches are sent before the first is mined (see
        :meth:`Chain.transact_many`). Every item is checked and packed before anything is
        sent; a batch that fails raises after the batches before it are registered.
        """
        if batch_size < 1:
            raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
        batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
        calls = [
            self.resources.functions.registerBatch(b"".join(item.packed() for item in batch))
            for batch in batches
        ]
        mined = self.chain.transact_many(owner, calls, in_flight=in_flight)
        done = []
        for batch, tx in zip(batches, mined, strict=True):
            # The ids follow from owner and content hash; the transaction's events must agree.
            expected = resource_ids_of(owner.address, (item.content_hash for item in batch))
            if self._registered_ids(tx.logs) != expected:
                raise ChainError(
                    f"transaction 0x{tx.tx_hash.hex()} registered other resources than it "
                    "was sent with"
                )
            done.append((expected, tx))
        return done

    def register_resource(self, owner: LocalAccount, item: ResourceInput) -> bytes:
        """Register one resource with ``register``, one transaction; return its id."""
        receipt = self.chain.transact(owner, self.resources.functions.register(item.as_tuple()))
        address = self.resources.address.lower()
        (rid,) = [
            bytes(log["topics"][1])
            for log in receipt["logs"]
            if str(log["address"]).lower() == address
            and bytes(log["topics"][0]) == _RESOURCE_REGISTERED
        ]
        return rid

    def _registered_ids(self, logs: Sequence[RawLog]) -> list[bytes]:
        """The ids in the ResourceRegistered events among ``logs`` (their first indexed topic)."""
        address = self.resources.address.lower()
        return [
            log.topics[1]
            for log in logs
            if log.address == address and log.topics[0] == _RESOURCE_REGISTERED
        ]

    def resource_id(self, owner: str, content_hash: bytes) -> bytes:
        return bytes(
            self.chain.call(
                self.resources.functions.resourceIdOf(Web3.to_checksum_address(owner), content_hash)
            )
        )

    # -- trail anchors ---------------------------------------------------------------

    def anchor_head(
        self, member: LocalAccount, size: int, root: bytes, proof: Sequence[bytes]
    ) -> AnchoredHead:
        receipt = self.chain.transact(member, self.trail.functions.anchor(size, root, list(proof)))
        return AnchoredHead(
            member=member.address,
            size=size,
            root=root,
            block=int(receipt["blockNumber"]),
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        )

    def head_of(self, member: str) -> tuple[int, bytes]:
        """The member's latest anchored (size, root), read from the contract's storage."""
        head: Any = self.chain.call(self.trail.functions.headOf(Web3.to_checksum_address(member)))
        return int(head[0]), bytes(head[1])

    def anchored_heads(self, member: str) -> list[AnchoredHead]:
        """Every head the member ever anchored, oldest first, read from the chain's events."""
        topic_member = "0x" + "00" * 12 + Web3.to_checksum_address(member)[2:].lower()
        event = self.trail.events.HeadAnchored()
        with self.chain.translate_errors():
            logs = self.chain.w3.eth.get_logs(
                {
                    "address": self.trail.address,
                    "fromBlock": self.deployment.block,
                    "toBlock": "latest",
                    "topics": [event.topic, topic_member],
                }
            )
        heads = []
        for log in logs:
            ev = event.process_log(log)
            heads.append(
                AnchoredHead(
                    member=str(ev["args"]["member"]),
                    size=int(ev["args"]["size"]),
                    root=bytes(ev["args"]["root"]),
                    block=int(log["blockNumber"]),
                    tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                )
            )
        return heads


def _country(code: str) -> bytes:
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise InvalidInput(
            f"country {code!r} is not an ISO 3166-1 alpha-2 code", hint="e.g. CN, DE, US"
        )
    return code.upper().encode("ascii")
