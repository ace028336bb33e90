"""Typed calls to the four consortium contracts.

Each method here is one contract function: it takes libshare values, sends the signed
transaction through :class:`ledger.chain.Chain`, and returns what the contract decided
(ids, versions) read from the receipt's events. Reads for the hot path go to the SQL
index instead (see :mod:`ledger.indexer`); the reads here serve audits and deployment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from ledger.chain import Chain
from ledger.errors import ChainError, ConfigError, InvalidInput

CONTRACTS = ("Consortium", "LicenceRegistry", "ResourceRegistry", "TrailAnchor")

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
        links = []
        for relation, target in self.links:
            if relation not in RELATIONS:
                raise InvalidInput(
                    f"unknown provenance relation {relation!r}",
                    hint=f"use one of {', '.join(RELATIONS)}",
                )
            links.append((RELATIONS[relation], target))
        return (self.content_hash, self.cid, self.metadata_hash, self.licence_id, links)


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
        self, owner: LocalAccount, items: Sequence[ResourceInput], *, batch_size: int = 50
    ) -> list[bytes]:
        """Register ``items`` in batches; return their resource ids in order."""
        ids: list[bytes] = []
        for start in range(0, len(items), batch_size):
            batch = [item.as_tuple() for item in items[start : start + batch_size]]
            receipt = self.chain.transact(owner, self.resources.functions.registerBatch(batch))
            events = self.resources.events.ResourceRegistered().process_receipt(receipt)
            ids.extend(bytes(ev["args"]["id"]) for ev in events)
        if len(ids) != len(items):
            raise ChainError(f"registered {len(ids)} resources, expected {len(items)}")
        return ids

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
