"""A content store over an IPFS node's Kubo RPC API (``POST /api/v0/...``), with httpx.

Files go up with ``/api/v0/add`` under the options that make the node build the same
UnixFS DAG as :mod:`ledger.cid`; the upload is streamed as multipart and hashed locally
in the same pass, and the node's root CID must equal ours. Reads never trust the node:
:meth:`KuboStore.cat` walks the DAG block by block (``/api/v0/block/get``, then
:func:`ledger.unixfs.file_chunks`), checks every block against the CID that names it
before decoding it, and yields the file bytes in order, so a wrong byte is caught at the
block that carries it, before it is handed on (``/api/v0/cat`` would only let us notice
after the whole file had been passed along).

Works with Kubo and with the js-ipfs daemon of ``services/ipfs`` (the tests' node).
js-ipfs 0.66 has no option for the number of links per node (always 174), so the
``unixfs-v1-2025`` profile (1024 links) is refused rather than silently given a
different CID for files over 174 MiB.

Errors (all :class:`ledger.errors.LedgerError`)::

    StorageError
    ├── ContentUnavailable  (also ConnectionError)  the node does not answer
    └── BlockMismatch                                a block's bytes do not hash to its CID
    NotFound                                         the node does not have the block
    InvalidInput                                     a malformed CID or DAG, an unsupported profile
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from ledger.cid import (
    PROFILES,
    CidBuilder,
    Profile,
    RootInfo,
    cid_from_string,
    cid_to_string,
)
from ledger.errors import InvalidInput, LedgerError, NotFound, StorageError
from ledger.types import Cid
from ledger.unixfs import block_matches_cid, file_chunks

__all__ = ["BlockMismatch", "ContentUnavailable", "KuboStore"]

_ENV_HINT = "start it or check LIBSHARE_IPFS_API"
_READ_SIZE = 1 << 20

_DAEMON_LIMITS = {Profile.UNIXFS_V1_2025: "1024 links per node"}
"""Profiles whose DAG ``/api/v0/add`` cannot be told to build, and what it lacks."""


class ContentUnavailable(StorageError, ConnectionError):
    """The IPFS node cannot be reached."""

    title = "Content store unavailable"


class BlockMismatch(StorageError):
    """The node served bytes that do not hash to the CID they were asked for."""

    title = "Content does not match its CID"

    def __init__(self, cid: str, computed: bytes) -> None:
        super().__init__(
            f"the IPFS node served a block for {cid} whose sha-256 is {computed.hex()}, "
            "not the digest in that CID",
            hint="the node's blockstore is corrupt or the node is not trustworthy: "
            "repair it (ipfs repo verify) or fetch the content elsewhere",
        )
        self.cid = cid
        self.computed = computed


class KuboStore:
    """The :class:`ledger.content.ContentStore` of an IPFS node's RPC API.

    ``api_url`` is the API root (``http://127.0.0.1:5001``); ``timeout`` bounds each
    request, and the node is asked to give up a block lookup after the same time;
    ``lookup_timeout`` bounds :meth:`has` (an online node would otherwise ask the
    network for a block it lacks); ``transport`` replaces httpx's (tests).
    """

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = 30.0,
        lookup_timeout: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._lookup_timeout = lookup_timeout
        # The client waits a little longer than the node, so a slow lookup comes back
        # as the node's "timed out" answer rather than as a dead connection.
        self._client = httpx.Client(
            base_url=f"{self.api_url}/api/v0/",
            timeout=httpx.Timeout(timeout + 5.0, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> KuboStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- ContentStore

    def put(
        self, data: BinaryIO | Iterable[bytes], *, profile: Profile = Profile.KUBO_V0
    ) -> RootInfo:
        """Add a file (streamed, constant memory) to the node, pinned; return its root.

        The CID is computed locally over the same bytes as they are sent; a node that
        answers with another CID raises :class:`StorageError` naming both.
        """
        params = _add_params(profile)
        builder = CidBuilder(profile)
        boundary = secrets.token_hex(16)
        body = _multipart(_pieces(data, builder), boundary, "file")
        lines = self._upload("add", params, body, boundary)
        info = builder.finish()
        returned = _last_field(lines, "Hash", "add")
        try:
            theirs = cid_from_string(returned)
        except InvalidInput as exc:
            raise StorageError(
                f"the IPFS node answered /api/v0/add with {returned!r}, not a CID",
                hint="check that LIBSHARE_IPFS_API names a Kubo RPC API",
            ) from exc
        if theirs != info.cid_bytes:
            with contextlib.suppress(LedgerError):  # keep no pin on a DAG nobody asked for
                self.unpin(Cid(cid_to_string(theirs)))
            raise StorageError(
                f"the IPFS node stored the file as {cid_to_string(theirs)} but libshare "
                f"computes {info.cid} for the same bytes under profile {Profile(profile).value}",
                hint="the node's add options differ from the profile (an old or patched "
                "node?); its copy was unpinned, store the content elsewhere",
            )
        return info

    def cat(self, cid: Cid) -> Iterator[bytes]:
        """Stream the file under ``cid``: every block is fetched and checked first.

        Raises :class:`NotFound` for a missing block, :class:`BlockMismatch` for a block
        that does not match its CID and :class:`InvalidInput` for a malformed DAG or one
        whose sizes disagree with its bytes (:func:`ledger.unixfs.file_chunks`).
        """
        return file_chunks(cid, self.get_block)

    def get_block(self, cid: Cid) -> bytes:
        """One block's bytes, verified against ``cid``."""
        return self._verified_block(_parse_cid(cid))

    def has(self, cid: Cid) -> bool:
        """Whether the node holds the block ``cid`` (found within ``lookup_timeout``)."""
        text = cid_to_string(_parse_cid(cid))
        params = {"arg": text, "offline": "true", "timeout": _duration(self._lookup_timeout)}
        try:
            self._call("block/stat", params)
        except NotFound:
            return False
        return True

    def pin(self, cid: Cid) -> None:
        """Pin the DAG under ``cid`` on the node (it must hold every block)."""
        text = cid_to_string(_parse_cid(cid))
        self._call("pin/add", {"arg": text, "timeout": _duration(self._timeout)})

    def unpin(self, cid: Cid) -> None:
        """Remove the pin of ``cid``; a CID that is not pinned is left as it is."""
        text = cid_to_string(_parse_cid(cid))
        try:
            self._call("pin/rm", {"arg": text})
        except StorageError as exc:
            if "not pinned" not in exc.message:
                raise

    # ---------------------------------------------------------------- extras

    def dag_import(self, car: bytes | str | os.PathLike[str]) -> list[Cid]:
        """Import a CAR file (its bytes or its path) and pin its roots; return the roots."""
        if isinstance(car, bytes):
            pieces: Iterable[bytes] = (car,)
            handle = None
        else:
            try:
                handle = Path(car).open("rb")  # noqa: SIM115 - closed below, after the upload
            except OSError as exc:
                raise InvalidInput(
                    f"cannot read the CAR file {os.fspath(car)!r}: {exc.strerror or exc}",
                    hint="check the path",
                ) from exc
            pieces = iter(lambda: handle.read(_READ_SIZE), b"")
        boundary = secrets.token_hex(16)
        body = _multipart(pieces, boundary, "file")
        try:
            lines = self._upload("dag/import", {"pin-roots": "true"}, body, boundary)
        finally:
            if handle is not None:
                handle.close()
        roots = []
        for line in lines:
            entry = _json_line(line, "dag/import")
            root = entry.get("Root")
            if not isinstance(root, dict):
                continue
            if root.get("PinErrorMsg"):
                raise StorageError(f"the IPFS node could not pin a CAR root: {root['PinErrorMsg']}")
            link = root.get("Cid", {})
            text = link.get("/") if isinstance(link, dict) else None
            if not isinstance(text, str):
                raise StorageError(f"the IPFS node answered /api/v0/dag/import with {line!r}")
            roots.append(cid_to_string(_parse_cid(Cid(text))))
        return roots

    def version(self) -> str:
        """The node's version string (``/api/v0/version``)."""
        answer = self._call("version", {}).json()
        version = answer.get("Version") if isinstance(answer, dict) else None
        if not isinstance(version, str):
            raise StorageError(f"the IPFS node answered /api/v0/version with {answer!r}")
        return version

    # ---------------------------------------------------------------- plumbing

    def _verified_block(self, cid: bytes) -> bytes:
        text = cid_to_string(cid)
        data = self._call("block/get", {"arg": text, "timeout": _duration(self._timeout)}).content
        if not block_matches_cid(cid, data):
            raise BlockMismatch(text, hashlib.sha256(data).digest())
        return data

    def _call(self, command: str, params: dict[str, str]) -> httpx.Response:
        """POST a command and return its (read) answer, mapping every failure."""
        try:
            response = self._client.post(command, params=params)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code != 200:
            raise _daemon_error(command, params.get("arg"), response.status_code, response.text)
        return response

    def _upload(
        self, command: str, params: dict[str, str], body: Iterator[bytes], boundary: str
    ) -> list[str]:
        """POST a streamed multipart ``body``; return the answer's non-empty lines."""
        request = self._client.build_request(
            "POST",
            command,
            params=params,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        try:
            response = self._client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    text = response.read().decode("utf-8", "replace")
                    raise _daemon_error(command, None, response.status_code, text)
                return [line for line in response.iter_lines() if line.strip()]
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> ContentUnavailable:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ContentUnavailable(
                f"IPFS daemon at {self.api_url} did not answer within {self._timeout + 5.0:.0f} s",
                hint=f"check that the node is healthy, or raise the timeout; {_ENV_HINT}",
            )
        return ContentUnavailable(
            f"IPFS daemon at {self.api_url} is not answering ({type(exc).__name__})",
            hint=_ENV_HINT,
        )


# ---------------------------------------------------------------- requests


def _add_params(profile: Profile) -> dict[str, str]:
    """The ``/api/v0/add`` options under which the node builds ``profile``'s DAG."""
    try:
        profile = Profile(profile)
    except ValueError as exc:
        known = ", ".join(p.value for p in Profile)
        raise InvalidInput(f"unknown CID profile {profile!r}", hint=f"use one of {known}") from exc
    if profile in _DAEMON_LIMITS:
        raise InvalidInput(
            f"profile {profile.value} cannot be stored through the Kubo RPC API: "
            f"/api/v0/add has no option for its {_DAEMON_LIMITS[profile]} (the node "
            "always uses 174), so files over 174 chunks would get a different CID",
            hint=f"use {Profile.KUBO_V0.value} or {Profile.V1_RAW_256K.value} with an IPFS node, "
            "or the local blockstore for this profile",
        )
    spec = PROFILES[profile]
    params = {
        "cid-version": str(spec.cid_version),
        "raw-leaves": "true" if spec.raw_leaves else "false",
        "chunker": f"size-{spec.chunk_size}",
        "pin": "true",
        "quieter": "true",
        "progress": "false",
    }
    if spec.cid_version == 1:
        params["cid-base"] = "base32"  # js-ipfs prints base58btc by default
    return params


def _duration(seconds: float) -> str:
    """A Go / parse-duration string (``1.5s``), as Kubo's and js-ipfs's ``timeout`` take."""
    return f"{seconds:g}s"


def _pieces(data: BinaryIO | Iterable[bytes], builder: CidBuilder) -> Iterator[bytes]:
    """The file's bytes in pieces, each fed to ``builder`` on its way out."""
    if hasattr(data, "read"):
        reader: BinaryIO = data  # type: ignore[assignment]
        source: Iterable[bytes] = iter(lambda: reader.read(_READ_SIZE), b"")
    else:
        source = data
    for piece in source:
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"content pieces must be bytes, got {type(piece).__name__}",
                hint="open files in binary mode ('rb')",
            )
        if piece:
            chunk = bytes(piece)
            builder.update(chunk)
            yield chunk


def _multipart(pieces: Iterable[bytes], boundary: str, name: str) -> Iterator[bytes]:
    """One multipart/form-data file part around ``pieces``, generated lazily."""
    yield (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")
    yield from pieces
    yield f"\r\n--{boundary}--\r\n".encode("ascii")


# ---------------------------------------------------------------- answers


def _daemon_error(command: str, arg: str | None, status: int, text: str) -> LedgerError:
    try:
        message = str(json.loads(text).get("Message", text))
    except (ValueError, AttributeError):
        message = text.strip()[:500] or f"HTTP {status}"
    lowered = message.lower()
    if arg is not None and ("not found" in lowered or "timed out" in lowered):
        return NotFound(
            f"the IPFS node does not have {arg} ({message})",
            hint="add or import the content on this node first",
        )
    if status == 404:
        return StorageError(
            f"the IPFS node has no command /api/v0/{command} ({message})",
            hint="check that LIBSHARE_IPFS_API names a Kubo RPC API endpoint",
        )
    return StorageError(f"the IPFS node refused /api/v0/{command}: {message} (HTTP {status})")


def _json_line(line: str, command: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise StorageError(f"the IPFS node answered /api/v0/{command} with {line!r}") from exc
    if not isinstance(entry, dict):
        raise StorageError(f"the IPFS node answered /api/v0/{command} with {line!r}")
    if entry.get("Type") == "error":
        raise StorageError(f"the IPFS node failed /api/v0/{command}: {entry.get('Message')}")
    return entry


def _last_field(lines: list[str], field: str, command: str) -> str:
    value = None
    for line in lines:
        value = _json_line(line, command).get(field, value)
    if not isinstance(value, str):
        raise StorageError(
            f"the IPFS node answered /api/v0/{command} without a {field}",
            hint="the upload may have been cut short; try again",
        )
    return value


def _parse_cid(cid: str) -> bytes:
    return cid_from_string(cid)
