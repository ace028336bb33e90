"""``libshare audit``: export a member's usage trail, and verify an export against the chain.

``export`` opens the data dir like every other command (it needs the keystore password).
``verify`` needs no key and writes nothing: it reads the export, the chain's
``HeadAnchored`` events and the consortium's deployment record. Its exit status is 0 when
the export verifies, 1 when it was tampered with, 2 when it could not be verified (file
unreadable, chain unreachable, another chain or deployment).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from web3 import Web3

from api.cli_common import DataDir, Rpc, _run, _settings, err
from ledger.chain import Chain
from ledger.errors import ConfigError, ContractReverted, LedgerError, ProofError
from ledger.instance import Instance
from ledger.onchain import ConsortiumContracts, Deployment
from ledger.trail_export import (
    ExportHeader,
    ExportReport,
    export_trail,
    load_chain_heads,
    read_header,
    verify_export_file,
)

audit_app = typer.Typer(
    help="Export a member's usage trail and verify an export against the chain.",
    no_args_is_help=True,
)

__all__ = ["audit_app"]

EXIT_VERIFIED, EXIT_TAMPERED, EXIT_UNVERIFIABLE = 0, 1, 2


@audit_app.command("export")
def export(
    member: Annotated[str, typer.Option(help="Library id whose trail to export, e.g. CN-A")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (JSON Lines)")],
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Write MEMBER's usage trail and its anchored heads to a JSON Lines file."""
    settings = _settings(data_dir, rpc)

    def go() -> int:
        with Instance(settings.instance_config()) as instance, _atomic(output) as out:
            return export_trail(instance, member, out)

    count = _run(go)
    err.print(f"exported {count} entries of {member} to {output}", highlight=False)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path``; rename it over ``path`` only on success."""
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write in {folder} ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@audit_app.command("verify")
def verify(
    export_file: Annotated[Path, typer.Argument(help="A `libshare audit export` file")],
    data_dir: DataDir = None,
    rpc: Rpc = None,
    deployment_file: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            help="The consortium's deployment.json [default: the one in the data dir]",
        ),
    ] = None,
) -> None:
    """Verify an export against the heads anchored on chain; exit 0 OK, 1 tampered, 2 unverifiable.

    Needs no key: reads the chain (--rpc, else the data dir's embedded chain) and the
    deployment record, and writes nothing.
    """
    try:
        report = _verify(export_file, data_dir, rpc, deployment_file)
    except ProofError as exc:
        sys.stdout.write(f"TAMPERED: {exc.message}\n")  # the place, without the hint
        raise typer.Exit(EXIT_TAMPERED) from None
    except LedgerError as exc:
        err.print(f"[red]could not verify:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_UNVERIFIABLE) from None
    except Exception as exc:  # a verifier must answer in one line, never with a traceback
        err.print(
            f"[red]could not verify:[/red] unexpected {type(exc).__name__}: {exc}",
            highlight=False,
        )
        raise typer.Exit(EXIT_UNVERIFIABLE) from None
    sys.stdout.write(
        f"OK: {report.entries} entries, {report.heads} anchored heads verified, "
        f"root {report.anchored_root.hex()}, {report.unanchored} unanchored\n"
    )


class _Unverifiable(LedgerError):
    """The export cannot be checked here: not the command's verdict on the trail."""


def _verify(
    export_file: Path, data_dir: Path | None, rpc: str | None, deployment_file: Path | None
) -> ExportReport:
    settings = _settings(data_dir, rpc)
    header = _read_header(export_file)
    deployment = Deployment.load(deployment_file or settings.data_dir / "deployment.json")
    chain = _open_chain(settings.chain_url, settings.data_dir)
    try:
        _check_deployment(header, deployment, chain)
        heads = load_chain_heads(chain, deployment, header.account)
        try:
            return verify_export_file(export_file, heads)  # on two cores for a large file
        except OSError as exc:
            raise _Unverifiable(f"cannot read {export_file} ({exc})") from exc
    finally:
        chain.close()


def _read_header(path: Path) -> ExportHeader:
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            first = lines.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unverifiable(
            f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})",
            hint="pass the file written by `libshare audit export`",
        ) from exc
    try:
        return read_header(first)
    except ProofError as exc:  # without a header there is no chain to check against
        raise _Unverifiable(str(exc)) from exc


def _open_chain(url: str | None, data_dir: Path) -> Chain:
    if url is not None:
        return Chain.open_rpc(url)
    chain_file = data_dir / "chain.sqlite"
    if not chain_file.is_file():
        raise ConfigError(
            f"no embedded chain in {data_dir} (chain.sqlite is missing)",
            hint="pass --rpc URL of a node of the consortium's chain, or the right --data-dir",
        )
    return Chain.open_embedded(chain_file)


def _check_deployment(header: ExportHeader, deployment: Deployment, chain: Chain) -> None:
    """The export must be of this chain and deployment, and of the account the chain knows."""
    with chain.translate_errors():
        chain_id = int(chain.w3.eth.chain_id)
    if chain_id != deployment.chain_id:
        raise ConfigError(
            f"the deployment is on chain {deployment.chain_id}, the node is chain {chain_id}",
            hint="point --rpc at the consortium's chain",
        )
    if header.chain_id != deployment.chain_id:
        raise _Unverifiable(
            f"the export is of chain {header.chain_id}, the deployment is on chain "
            f"{deployment.chain_id}",
            hint="verify it against the chain it was exported from",
        )
    anchor = deployment.addresses["TrailAnchor"]
    if Web3.to_checksum_address(header.trail_anchor) != Web3.to_checksum_address(anchor):
        raise _Unverifiable(
            f"the export names TrailAnchor {header.trail_anchor}, the deployment's is {anchor}",
            hint="verify it against the deployment it was exported from",
        )
    contracts = ConsortiumContracts(chain, deployment)
    try:
        account = contracts.chain.call(contracts.consortium.functions.accountOf(header.member))
    except ContractReverted as exc:
        if exc.error == "ConsortiumUnknownLibrary":
            raise ProofError(
                f"the header names member {header.member}, which the consortium does not know"
            ) from exc
        raise
    if Web3.to_checksum_address(account) != Web3.to_checksum_address(header.account):
        raise ProofError(
            f"the header gives account {header.account} for {header.member}, the consortium "
            f"registers {account}"
        )
