"""Federation between member instances: the supplier's and the borrower's side (I/O).

:class:`Supplier` runs on the instance of the member that owns a resource (A). It takes
a share request signed by another member (B), checks the signer against the member
registry (the index of the Consortium contract), the expiry and the request id, decides
it with the ordinary access check — recorded in A's trail before anything is answered —
records the signed request and its answer as a second entry of A's trail, and answers
with its decision signed by A's chain key. An allowed answer carries a one-time token
for the content, bound to that decision: :meth:`Supplier.deliver` spends it.

:class:`Borrower` runs on B's instance for B's delivery desk. It pseudonymises the patron,
signs the request with B's chain key, sends it to A's instance (found in the peers file),
checks A's signature against the registry and the content's sha-256 against the hash
registered on chain, and records a receipt in B's own trail through B's decision writer.
The content waits in B's spool for the desk to fetch once (:meth:`Borrower.collect`).

Exceptions: a peer that cannot be reached or answers wrongly raises
:class:`~ledger.errors.PeerError` (HTTP 502), one that does not answer in time
:class:`~ledger.errors.PeerTimeout` (504). The supplier's refusals are
:mod:`ledger.federation`'s errors (403 for a signer, 409 expired or replayed).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, select

from ledger.access import CheckResult, RecordedEntry, ShareRequest
from ledger.delivery import Delivery, redeem
from ledger.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PeerError,
    PeerTimeout,
    PermissionDenied,
)
from ledger.federation import (
    ANSWER,
    MAX_VALIDITY_S,
    RECEIPT,
    Domain,
    RequestReplayed,
    ShareAnswer,
    ShareRequestMessage,
    answer_fields,
    check_fresh,
    check_signer,
    receipt_fields,
    recover_signer,
    sign,
)
from ledger.instance import Instance
from ledger.store import MemberRow, ResourceRow

__all__ = [
    "CONTENT_TOKEN_HEADER",
    "Answered",
    "Borrowed",
    "Borrower",
    "FederationRequestRow",
    "Supplier",
    "domain_of",
    "load_peers",
    "save_peers",
]

CONTENT_TOKEN_HEADER = "X-Libshare-Content-Token"
"""The header that carries a supplier's one-time content token."""

REQUEST_VALIDITY_S = 120
"""How long the borrower's signed requests stay valid (at most MAX_VALIDITY_S)."""

RECORD_TIMEOUT_S = 30.0
MAX_CONTENT = 4 << 30  # bytes a borrower accepts for one delivery
_KEEP_CLAIMS = timedelta(days=1)  # request ids are kept this long after their expiry


class FederationRequestRow(SQLModel, table=True):
    """A signed request id a supplier has accepted: never answered twice."""

    __tablename__ = "federation_request"

    request_id: str = Field(primary_key=True)  # 0x-hex, chosen by the borrower
    supplier: str
    requesting_member: str = Field(index=True)
    received_at: datetime
    expires_at: datetime = Field(index=True)
    decision_id: str | None = None


def domain_of(instance: Instance) -> Domain:
    """The EIP-712 domain of the consortium ``instance`` belongs to."""
    deployment = instance.require_contracts().deployment
    return Domain(deployment.chain_id, deployment.addresses["Consortium"])


def _accounts(instance: Instance) -> dict[str, str]:
    """Library id -> registered account, from the index of the Consortium contract."""
    with instance.db.session() as session:
        return {m.library_id: m.account for m in session.exec(select(MemberRow))}


def _check_signer(instance: Instance, signer: str, member: str, what: str) -> None:
    """The registry check; the index is synced first only if it does not know ``member``.

    A member's account never changes once admitted, so a known member's account settles
    it without asking the chain (and an unsigned caller cannot make this instance sync).
    """
    accounts = _accounts(instance)
    if member not in accounts:
        instance.catch_up()  # perhaps admitted since the last sync
        accounts = _accounts(instance)
    check_signer(signer, member, accounts, what)


def _resource(instance: Instance, resource_id: str) -> tuple[str, str]:
    """(owner library id, registered content hash as 0x-hex) of a resource in the index."""
    for attempt in range(2):
        with instance.db.session() as session:
            row = session.get(ResourceRow, resource_id)
            owner = (
                session.exec(select(MemberRow).where(MemberRow.account == row.owner)).first()
                if row is not None
                else None
            )
        if row is not None and owner is not None:
            return owner.library_id, row.content_hash.lower()
        if attempt == 0:
            instance.catch_up()
    raise NotFound(
        f"resource {resource_id} is not registered",
        hint="check the id, or wait for the index to catch up with the chain",
    )


def _grant_key(token: str) -> str:
    """The delivery grant's key id for a content token (only its hash is stored)."""
    return "federation:" + hashlib.sha256(token.encode()).hexdigest()[:40]


# -- the supplier ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """The supplier's answer: signed, recorded twice in its trail (decision, answer)."""

    answer: ShareAnswer
    signature: str  # the supplier's EIP-712 signature of ``answer``
    result: CheckResult  # the decision, as the access check recorded it
    record: RecordedEntry  # the answer entry
    content_token: str | None  # one-time token for the content, when allowed


class Supplier:
    """Answers share requests signed by other members, for the members this instance serves."""

    def __init__(self, instance: Instance, *, max_validity_s: int = MAX_VALIDITY_S) -> None:
        self.instance = instance
        self.max_validity_s = max_validity_s

    def answer(self, request: ShareRequestMessage, signature: str) -> Answered:
        """Verify, decide, record and sign the answer to one signed request.

        Refuses (nothing recorded): a supplier this instance does not serve (404), an
        expired request (409), a signer who is not the requesting member's registered
        account (403), a resource the supplier does not own (404), unknown vocabulary
        (422), and a request id already answered (409).
        """
        instance = self.instance
        now = instance.clock()
        check_fresh(request.expires_at, int(now.timestamp()), max_validity_s=self.max_validity_s)
        if request.supplier not in instance.keystore.library_ids():
            raise NotFound(
                f"this instance does not serve {request.supplier}",
                hint="send the request to the supplier's own instance (see its peers entry)",
            )
        domain = domain_of(instance)
        signer = recover_signer(request, domain, signature)
        _check_signer(instance, signer, request.requesting_member, "share request")
        owner, content_hash = _resource(instance, request.resource_id)
        if owner != request.supplier:
            raise NotFound(
                f"resource {request.resource_id} belongs to {owner}, not {request.supplier}",
                hint=f"send the request to {owner}'s instance",
            )
        share = ShareRequest.parse(
            resource_id=request.resource_id,
            requesting_member=request.requesting_member,
            patron=request.patron,
            patron_category=request.patron_category,
            purpose=request.purpose,
            method=request.method,
            scope=request.scope,
            destination_country=request.destination_country,
            campaign=request.campaign or None,
        )
        self._claim(request, now)
        token = secrets.token_urlsafe(32)
        result = instance.access.check_request(share, grant_to=_grant_key(token))
        d = result.decision
        answer = ShareAnswer(
            request_id=request.request_id,
            supplier=request.supplier,
            requesting_member=request.requesting_member,
            resource_id=request.resource_id,
            decision_id=result.decision_id,
            decision_seq=result.trail_seq,
            decision=str(d.outcome),
            reason=str(d.reason),
            licence_id=d.licence_id or 0,
            licence_version=d.licence_version or 0,
            fee_minor=d.fee.amount_minor if d.fee else 0,
            currency=d.fee.currency if d.fee else "",
            content_hash=content_hash,
        )
        fields = answer_fields(request, signature, signer, answer)
        record = instance.access.record(request.supplier, ANSWER, fields)
        recorded = record.result(timeout=RECORD_TIMEOUT_S)
        with instance.db.session() as session:
            row = session.get(FederationRequestRow, request.request_id)
            if row is not None:
                row.decision_id = result.decision_id
                session.add(row)
        account = instance.member_keys(request.supplier).account
        return Answered(
            answer=answer,
            signature=sign(answer, domain, account),
            result=result,
            record=recorded,
            content_token=token if d.allowed else None,
        )

    def deliver(self, request_id: str, token: str) -> Delivery:
        """Stream the content of an allowed answer: once, within its validity, for its token."""
        with self.instance.db.session() as session:
            row = session.get(FederationRequestRow, request_id)
        if row is None or row.decision_id is None:
            raise NotFound(
                f"no answered request {request_id}",
                hint="ask with a signed share request first",
            )
        return redeem(self.instance, row.decision_id, _grant_key(token))

    def _claim(self, request: ShareRequestMessage, now: datetime) -> None:
        """Record the request id before deciding: a second request with it is refused."""
        expires = datetime.fromtimestamp(request.expires_at, UTC)
        try:
            with self.instance.db.session() as session:
                # Ids of requests long expired can go: an expired request is refused anyway.
                session.execute(
                    delete(FederationRequestRow).where(
                        col(FederationRequestRow.expires_at) < now - _KEEP_CLAIMS
                    )
                )
                session.add(
                    FederationRequestRow(
                        request_id=request.request_id,
                        supplier=request.supplier,
                        requesting_member=request.requesting_member,
                        received_at=now,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            with self.instance.db.session() as session:
                earlier = session.get(FederationRequestRow, request.request_id)
            answered = (
                f" (decision {earlier.decision_id})" if earlier and earlier.decision_id else ""
            )
            raise RequestReplayed(
                f"request {request.request_id} was already answered{answered}; a signed request "
                "is answered once",
                hint="send a new request with a new request_id and a new signature",
            ) from None


# -- the borrower ----------------------------------------------------------------------


def load_peers(path: Path) -> dict[str, str]:
    """The peers file: a JSON object of library id -> base URL of that member's instance.

    A missing file is no peers.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the peers file {path} is unreadable ({exc})",
            hint='write it as {"CN-A": "https://libshare.a.example"}',
        ) from exc
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ConfigError(
            f"the peers file {path} is not an object of library id -> URL",
            hint='write it as {"CN-A": "https://libshare.a.example"}',
        )
    for library_id, url in raw.items():
        _check_url(library_id, url)
    return {k: v.rstrip("/") for k, v in raw.items()}


def save_peers(path: Path, peers: dict[str, str]) -> None:
    """Write the peers file atomically."""
    for library_id, url in peers.items():
        _check_url(library_id, url)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(peers, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_url(library_id: str, url: str) -> None:
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"the peer URL of {library_id} is {url!r}, not an http(s) URL",
            hint="give the base URL of its libshare service, e.g. https://libshare.a.example",
        )


@dataclass(frozen=True)
class Borrowed:
    """What the borrower's instance got from the supplier, and its receipt."""

    request: ShareRequestMessage
    answer: ShareAnswer
    receipt: RecordedEntry
    outcome: str  # the receipt's outcome: received or denied
    term: str  # the supplier's explanation (unsigned)
    detail: str
    obligations: list[str]
    content_url: str | None  # where the desk fetches the content once, on this instance


@dataclass(frozen=True)
class _Spooled:
    path: Path
    key_id: str
    expires_at: datetime
    resource_id: str
    media_type: str
    size: int


ClientFactory = Callable[[str], httpx.Client]
"""Gives the HTTP client for a peer's base URL (tests pass an in-process client)."""


class Borrower:
    """Borrows resources of other members for this instance's patrons."""

    def __init__(
        self,
        instance: Instance,
        peers_file: Path,
        *,
        timeout_s: float = 10.0,
        validity_s: int = REQUEST_VALIDITY_S,
        client_factory: ClientFactory | None = None,
        spool_dir: Path | None = None,
        hold: timedelta = timedelta(minutes=5),
    ) -> None:
        if not 0 < validity_s <= MAX_VALIDITY_S or timeout_s <= 0:
            raise InvalidInput(
                f"a request validity of {validity_s} s or a timeout of {timeout_s} s is not usable",
                hint=f"validity between 1 and {MAX_VALIDITY_S} s, timeout above 0",
            )
        self.instance = instance
        self.peers_file = peers_file
        self.timeout_s = timeout_s
        self.validity_s = validity_s
        self.hold = hold
        self._client_factory = client_factory
        self.spool_dir = spool_dir or instance.config.data_dir / "spool"
        self._spool: dict[str, _Spooled] = {}
        self._lock = threading.Lock()
        # Content spooled by an earlier process is unreachable (the grants were in memory).
        if self.spool_dir.is_dir():
            for stale in self.spool_dir.glob("*.part"):
                stale.unlink(missing_ok=True)

    def peer_url(self, library_id: str) -> str:
        peers = load_peers(self.peers_file)
        url = peers.get(library_id)
        if url is None:
            raise ConfigError(
                f"no peer URL for {library_id} in {self.peers_file}",
                hint=f"add it: libshare peers set {library_id} https://…",
            )
        return url

    def borrow(
        self,
        member: str,
        key_id: str,
        *,
        resource_id: str,
        patron_id: str,
        patron_category: str,
        purpose: str,
        method: str,
        scope: str,
        destination_country: str,
        campaign: str | None = None,
        supplier: str | None = None,
    ) -> Borrowed:
        """Ask the owner of ``resource_id`` for it on behalf of ``member``'s patron.

        ``key_id`` is the desk's API key: only it may fetch the content afterwards.
        The receipt is in ``member``'s trail before this returns. Raises
        :class:`PeerError` / :class:`PeerTimeout` when the supplier cannot be reached or
        answers wrongly; when bytes arrive that do not hash as registered, the receipt
        records it and :class:`PeerError` says so.
        """
        instance = self.instance
        self._sweep()
        owner, content_hash = _resource(instance, resource_id.lower())
        if supplier is not None and supplier != owner:
            raise InvalidInput(
                f"resource {resource_id} belongs to {owner}, not {supplier}",
                hint=f"name {owner} as the supplier, or leave it out",
            )
        if owner == member:
            raise InvalidInput(
                f"resource {resource_id} is {member}'s own",
                hint="check your own resources with POST /v1/access/check",
            )
        url = self.peer_url(owner)
        keys = instance.member_keys(member)
        now = instance.clock()
        request = ShareRequestMessage(
            request_id="0x" + secrets.token_hex(32),
            supplier=owner,
            requesting_member=member,
            resource_id=resource_id.lower(),
            patron=keys.pseudonym(patron_id, now),
            patron_category=patron_category,
            purpose=purpose,
            method=method,
            scope=scope,
            destination_country=destination_country.upper(),
            campaign=campaign or "",
            expires_at=int(now.timestamp()) + self.validity_s,
        )
        domain = domain_of(instance)
        signature = sign(request, domain, keys.account)
        with self._client(url) as client:
            body = self._ask(client, url, owner, request, signature)
            answer, answer_signature = self._verify_answer(body, request, content_hash, domain)
            outcome, received_hash, spooled = "denied", None, None
            if answer.decision == "allow":
                outcome, received_hash, spooled = self._fetch(client, owner, body, answer, key_id)
        fields = receipt_fields(request, answer, answer_signature, outcome, received_hash)
        try:
            receipt = instance.access.record(member, RECEIPT, fields).result(
                timeout=RECORD_TIMEOUT_S
            )
        except BaseException:
            if spooled is not None:  # no receipt, no delivery
                spooled.path.unlink(missing_ok=True)
            raise
        if outcome in ("content_mismatch", "content_unavailable"):
            raise PeerError(
                f"{owner} allowed the request (decision {answer.decision_id}) but "
                + (
                    f"delivered bytes whose sha-256 {received_hash} is not the registered "
                    f"{content_hash}"
                    if outcome == "content_mismatch"
                    else "its content could not be fetched"
                )
                + f"; receipt {receipt.entry_id} records it",
                peer=owner,
                hint="ask again later; if it persists, tell the supplier",
            )
        content_url = None
        if spooled is not None:
            with self._lock:
                self._spool[receipt.entry_id] = spooled
            content_url = f"/v1/federation/receipts/{receipt.entry_id}/content"
        obligations = body.get("obligations")
        return Borrowed(
            request=request,
            answer=answer,
            receipt=receipt,
            outcome=outcome,
            term=str(body.get("term", "")),
            detail=str(body.get("detail", "")),
            obligations=[str(o) for o in obligations] if isinstance(obligations, list) else [],
            content_url=content_url,
        )

    def collect(self, receipt_id: str, key_id: str) -> Delivery:
        """Stream spooled content to the desk that borrowed it: once, within ``hold``."""
        with self._lock:
            spooled = self._spool.get(receipt_id)
            if spooled is None:
                raise NotFound(
                    f"no content waits for receipt {receipt_id}",
                    hint="it was fetched already, expired, or the service restarted; borrow again",
                )
            if spooled.key_id != key_id:
                raise PermissionDenied(
                    f"receipt {receipt_id} was borrowed with another API key",
                    hint="fetch the content with the key that borrowed it",
                )
            del self._spool[receipt_id]
        if self.instance.clock() >= spooled.expires_at:
            spooled.path.unlink(missing_ok=True)
            raise NotFound(
                f"the content of receipt {receipt_id} expired at {spooled.expires_at.isoformat()}",
                hint="borrow again",
            )
        return Delivery(spooled.resource_id, spooled.media_type, spooled.size, _drain(spooled.path))

    # -- internals -------------------------------------------------------------------

    @contextlib.contextmanager
    def _client(self, url: str) -> Iterator[httpx.Client]:
        if self._client_factory is not None:
            yield self._client_factory(url)
            return
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 5.0))
        with httpx.Client(base_url=url, timeout=timeout) as client:
            yield client

    def _ask(
        self,
        client: httpx.Client,
        url: str,
        owner: str,
        request: ShareRequestMessage,
        signature: str,
    ) -> dict[str, Any]:
        payload = {"request": request.as_json(), "signature": signature}
        try:
            response = client.post("/v1/federation/requests", json=payload)
        except httpx.TimeoutException as exc:
            raise PeerTimeout(
                f"{owner}'s instance at {url} did not answer within {self.timeout_s:g} s",
                peer=owner,
                hint="try again; the supplier may have recorded a decision without a receipt",
            ) from exc
        except httpx.TransportError as exc:
            raise PeerError(
                f"cannot reach {owner}'s instance at {url} ({type(exc).__name__})",
                peer=owner,
                hint="check the peers file and that the supplier's service is running",
            ) from exc
        if response.status_code != 200:
            raise PeerError(
                f"{owner} refused the request: {response.status_code} {_problem(response)}",
                peer=owner,
                status=response.status_code,
                hint="see the supplier's reason; a request is signed and answered once",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PeerError(f"{owner} answered with something other than a JSON object", peer=owner)
        return body

    def _verify_answer(
        self,
        body: dict[str, Any],
        request: ShareRequestMessage,
        content_hash: str,
        domain: Domain,
    ) -> tuple[ShareAnswer, str]:
        owner = request.supplier
        try:
            answer = ShareAnswer(**body["answer"])
            signature = str(body["signature"])
        except (KeyError, TypeError, InvalidInput) as exc:
            raise PeerError(f"{owner}'s answer is malformed ({exc})", peer=owner) from exc
        expected = {
            "request_id": request.request_id,
            "supplier": request.supplier,
            "requesting_member": request.requesting_member,
            "resource_id": request.resource_id,
            "content_hash": content_hash,
        }
        for name, want in expected.items():
            got = getattr(answer, name)
            if got != want:
                raise PeerError(
                    f"{owner}'s answer has {name} {got}, the request {want}",
                    peer=owner,
                    hint="the peer URL may point at the wrong service",
                )
        if answer.decision not in ("allow", "deny"):
            raise PeerError(f"{owner}'s answer has decision {answer.decision!r}", peer=owner)
        try:
            signer = recover_signer(answer, domain, signature)
            _check_signer(self.instance, signer, owner, "answer")
        except (InvalidInput, PermissionDenied) as exc:
            raise PeerError(
                f"{owner}'s answer does not verify: {exc.message}",
                peer=owner,
                hint="the peer URL may point at a service that is not that member's",
            ) from exc
        return answer, signature

    def _fetch(
        self,
        client: httpx.Client,
        owner: str,
        body: dict[str, Any],
        answer: ShareAnswer,
        key_id: str,
    ) -> tuple[str, str | None, _Spooled | None]:
        """Fetch the content into the spool; return (outcome, sha-256 0x-hex, spooled)."""
        url, token = body.get("content_url"), body.get("content_token")
        if not isinstance(url, str) or not isinstance(token, str) or not url.startswith("/"):
            return "content_unavailable", None, None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{secrets.token_hex(16)}.part"
        hasher, size = hashlib.sha256(), 0
        try:
            with (
                client.stream("GET", url, headers={CONTENT_TOKEN_HEADER: token}) as response,
                path.open("wb") as out,
            ):
                if response.status_code != 200:
                    path.unlink(missing_ok=True)
                    return "content_unavailable", None, None
                media_type = response.headers.get("X-Libshare-Media-Type", "")
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_CONTENT:
                        raise PeerError(f"{owner} sent more than {MAX_CONTENT} bytes", peer=owner)
                    hasher.update(chunk)
                    out.write(chunk)
        except (httpx.HTTPError, OSError, PeerError):
            path.unlink(missing_ok=True)
            return "content_unavailable", None, None
        received = "0x" + hasher.hexdigest()
        if not hmac.compare_digest(received, answer.content_hash):
            path.unlink(missing_ok=True)
            return "content_mismatch", received, None
        spooled = _Spooled(
            path=path,
            key_id=key_id,
            expires_at=self.instance.clock() + self.hold,
            resource_id=answer.resource_id,
            media_type=media_type,
            size=size,
        )
        return "received", received, spooled

    def _sweep(self) -> None:
        """Forget spooled content whose hold has passed."""
        now = self.instance.clock()
        with self._lock:
            expired = [k for k, s in self._spool.items() if now >= s.expires_at]
            gone = [self._spool.pop(k) for k in expired]
        for spooled in gone:
            spooled.path.unlink(missing_ok=True)


def _problem(response: httpx.Response) -> str:
    """The title and detail of a problem+json answer, or the start of whatever it was."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return f"{body.get('title', '')}: {body.get('detail', '')}".strip(": ")
    return str(body)[:200]


def _drain(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """Read a spooled file in pieces, then delete it."""
    try:
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk
    finally:
        path.unlink(missing_ok=True)
