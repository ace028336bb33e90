"""Setting up a consortium of several libraries on one chain, one data dir each.

In order (each library on its own machine, with its own data dir and keystore)::

    libshare init --library CN-A --rpc URL            # every library: its chain key
    libshare consortium deploy --as CN-A --founder CN-A=0x…:1:CN --founder CN-B=0x…:2:CN \\
        --approvals 2 --output deployment.json         # whoever deploys
    libshare consortium join --deployment deployment.json   # every other library
    libshare members propose CN-C 0x… --tier 3 --country CN # a member proposes; others
    libshare members approve 1                              # approve (executes when enough)
    libshare licences issue --terms terms.json              # then resources add, peers set,
    libshare peers set CN-A https://…                       # serve; the desk borrows
    libshare audit reconcile A.jsonl B.jsonl --rpc URL      # the auditor

Machine-readable results (an account, a proposal id, a licence id) go to stdout, one per
line; everything else to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import select
from web3 import Web3

from api.cli_audit import _check_deployment, _open_chain, _read_header, _Unverifiable, audit_app
from api.cli_common import DataDir, Rpc, _run, _settings, console, err
from ledger.chain import Chain
from ledger.errors import Conflict, ContractReverted, InvalidInput, LedgerError, ProofError
from ledger.federation import Domain
from ledger.federation_service import load_peers, save_peers
from ledger.instance import Instance
from ledger.keys import Keystore
from ledger.onchain import ConsortiumContracts, Deployment, FounderInput
from ledger.reconcile import Reconciliation, Signatures, TrailSide, reconcile, side_from_export
from ledger.store import MemberRow
from ledger.trail_export import ExportReport, load_chain_heads, verify_export

consortium_cli = typer.Typer()
"""Merged into the top-level ``libshare`` command (``init`` and the groups below)."""

consortium_app = typer.Typer(
    help="Deploy a consortium on a chain, or join one.", no_args_is_help=True
)
members_app = typer.Typer(
    help="Member libraries: list, and admission by vote.", no_args_is_help=True
)
licences_app = typer.Typer(help="Licences your library issues.", no_args_is_help=True)
peers_app = typer.Typer(
    help="Where other members' instances answer (library id -> base URL).", no_args_is_help=True
)
consortium_cli.add_typer(consortium_app, name="consortium")
consortium_cli.add_typer(members_app, name="members")
consortium_cli.add_typer(licences_app, name="licences")
consortium_cli.add_typer(peers_app, name="peers")

__all__ = ["consortium_cli"]

ETHER = 10**18

Member = Annotated[
    str | None,
    typer.Option(
        "--member", "--as", help="Your library id, whose key signs [default: the only one here]"
    ),
]


def _acting(instance: Instance, member: str | None) -> str:
    """The library id that signs: the one given, or the only one this keystore holds."""
    if member is not None:
        return member
    held = instance.keystore.library_ids()
    if len(held) != 1:
        raise InvalidInput(
            f"this data dir holds keys for {', '.join(held) or 'no library'}",
            hint="name the library that signs with --member",
        )
    return held[0]


# -- init --------------------------------------------------------------------------------


@consortium_cli.command("init")
def init(
    library: Annotated[str, typer.Option(help="Your library id (ISIL-like), e.g. CN-XJTU")],
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Create your library's encrypted chain key and KEK; print its account.

    Run once per library, in its own data dir. The account must be funded with gas on the
    consortium's chain (or the chain must run with zero gas price) before it can write.
    """
    settings = _settings(data_dir, rpc)

    def go() -> str:
        config = settings.instance_config()
        keystore = Keystore(
            config.data_dir / "keys", config.keystore_password, scrypt_n=config.scrypt_n
        )
        existed = library in keystore.library_ids()
        keys = keystore.load(library) if existed else keystore.create(library)
        address = keys.account.address
        what = "keys already exist" if existed else "created the chain key and KEK"
        err.print(f"{library}: {what} in {config.data_dir / 'keys'}", highlight=False)
        if config.chain_url is not None:
            chain = Chain.open_rpc(config.chain_url)
            with chain.translate_errors():
                chain_id = int(chain.w3.eth.chain_id)
            balance = chain.balance(address)
            err.print(
                f"chain {chain_id}: {address} holds {balance / ETHER:g} ether"
                + ("" if balance else " — fund it before it writes (see the README)"),
                highlight=False,
            )
        return address

    sys.stdout.write(_run(go) + "\n")


# -- consortium --------------------------------------------------------------------------


def _founder(text: str) -> FounderInput:
    """``ID=ACCOUNT[:TIER[:COUNTRY]]``; tier 1 and country CN by default."""
    library_id, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not library_id or not 1 <= len(parts) <= 3:
        raise InvalidInput(
            f"--founder {text!r} is not ID=ACCOUNT[:TIER[:COUNTRY]]",
            hint="e.g. --founder CN-XJTU=0x1234…:1:CN",
        )
    account = parts[0]
    if not Web3.is_address(account):
        raise InvalidInput(f"--founder {library_id}: {account!r} is not an account address")
    try:
        tier = int(parts[1]) if len(parts) > 1 else 1
    except ValueError:
        raise InvalidInput(f"--founder {library_id}: tier {parts[1]!r} is not a number") from None
    if not 0 <= tier <= 255:
        raise InvalidInput(f"--founder {library_id}: tier {tier} is not between 0 and 255")
    country = parts[2] if len(parts) > 2 else "CN"
    return FounderInput(library_id, tier, country, Web3.to_checksum_address(account))


@consortium_app.command("deploy")
def deploy(
    founder: Annotated[
        list[str],
        typer.Option(help="A founding member, ID=ACCOUNT[:TIER[:COUNTRY]] (repeat)"),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The deployment record to give the others")
    ] = Path("deployment.json"),
    approvals: Annotated[
        int, typer.Option(min=1, help="Approvals an admission needs (1..founders)")
    ] = 1,
    member: Member = None,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Deploy the four contracts with the founding members; write the deployment record.

    The signing key (--as) becomes the consortium's administrator (it grants the
    AUDITOR and DELIVERY roles; it cannot admit members). This data dir joins at once.
    """
    settings = _settings(data_dir, rpc)

    def go() -> Deployment:
        founders = [_founder(f) for f in founder]
        with Instance(settings.instance_config()) as instance:
            if instance.deployed:
                raise Conflict(
                    f"{instance.config.data_dir} already belongs to a consortium",
                    hint="deploy from a new data dir",
                )
            admin = instance.member_keys(_acting(instance, member)).account
            contracts = ConsortiumContracts.deploy(instance.chain, admin, founders, approvals)
            instance.record_deployment(contracts)
            instance.sync()
            contracts.deployment.save(output)
            return contracts.deployment

    deployment = _run(go)
    err.print(
        f"deployed on chain {deployment.chain_id} at block {deployment.block}; wrote {output}",
        highlight=False,
    )
    for name, address in deployment.addresses.items():
        console.print(f"{name:<17} {address}", highlight=False)


@consortium_app.command("join")
def join(
    deployment_file: Annotated[
        Path, typer.Option("--deployment", help="The deployment record the deployer gave you")
    ],
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Record the consortium's deployment in this data dir (after checking it on the chain)."""
    settings = _settings(data_dir, rpc)

    def go() -> list[MemberRow]:
        deployment = Deployment.load(deployment_file)
        with Instance(settings.instance_config()) as instance:
            if instance.contracts is not None and instance.contracts.deployment != deployment:
                raise Conflict(
                    f"{instance.config.data_dir} already belongs to another deployment",
                    hint="join from a new data dir",
                )
            instance.attach(deployment)  # refuses another chain, or addresses without code
            instance.record_deployment(instance.require_contracts())
            instance.sync()
            return _members(instance)

    members = _run(go)
    err.print(f"joined; the consortium has {len(members)} members", highlight=False)
    _print_members(members)


@consortium_app.command("fund")
def fund(
    accounts: Annotated[list[str], typer.Argument(help="Accounts to give gas money")],
    ether: Annotated[float, typer.Option(min=0.0, help="Ether each")] = 10.0,
    rpc: Rpc = None,
    data_dir: DataDir = None,
) -> None:
    """Pay gas money from the node's own unlocked account (development chains only).

    On a consortium network fund accounts from an account you hold, or run the chain
    with zero gas price.
    """
    settings = _settings(data_dir, rpc)

    def go() -> None:
        chain = _open_chain(settings.chain_url, settings.data_dir)
        try:
            for account in accounts:
                if not Web3.is_address(account):
                    raise InvalidInput(f"{account!r} is not an account address")
                chain.fund_from_node(account, int(ether * ETHER))
                balance = chain.balance(account)
                err.print(f"{account} holds {balance / ETHER:g} ether", highlight=False)
        finally:
            chain.close()

    _run(go)


# -- members -----------------------------------------------------------------------------


def _members(instance: Instance) -> list[MemberRow]:
    with instance.db.session() as session:
        rows = list(session.exec(select(MemberRow)))
    return sorted(rows, key=lambda m: (m.admitted_block, m.library_id))


def _print_members(members: list[MemberRow]) -> None:
    for m in members:
        console.print(
            f"{m.library_id:<16} tier {m.tier}  {m.country}  {m.account}  "
            f"admitted at block {m.admitted_block}",
            highlight=False,
        )


@members_app.command("list")
def members_list(data_dir: DataDir = None, rpc: Rpc = None) -> None:
    """The member libraries the chain has admitted."""
    settings = _settings(data_dir, rpc)

    def go() -> list[MemberRow]:
        with Instance(settings.instance_config()) as instance:
            instance.require_contracts()
            instance.sync()
            return _members(instance)

    _print_members(_run(go))


def _proposal_state(contracts: ConsortiumContracts, proposal_id: int) -> tuple[int, int, bool]:
    """(approvals, approvals required, executed) of an admission proposal."""
    _, approvals, executed = contracts.chain.call(
        contracts.consortium.functions.proposal(proposal_id)
    )
    required = contracts.chain.call(contracts.consortium.functions.approvalsRequired())
    return int(approvals), int(required), bool(executed)


def _approve(
    instance: Instance, signer: str, proposal_id: int, *, approve: bool, execute: bool
) -> str:
    contracts = instance.require_contracts()
    account = instance.member_keys(signer).account
    if approve:
        contracts.approve_admission(account, proposal_id)
    approvals, required, executed = _proposal_state(contracts, proposal_id)
    if execute and not executed and approvals >= required:
        contracts.execute_admission(account, proposal_id)
        executed = True
    instance.sync()
    state = "executed: admitted" if executed else "waiting for approvals"
    return f"proposal {proposal_id}: {approvals} of {required} approvals, {state}"


@members_app.command("propose")
def members_propose(
    library: Annotated[str, typer.Argument(help="The candidate's library id")],
    account: Annotated[str, typer.Argument(help="The candidate's account (from its init)")],
    tier: Annotated[int, typer.Option(min=0, max=255, help="Its tier")] = 1,
    country: Annotated[str, typer.Option(help="Its country (ISO 3166-1 alpha-2)")] = "CN",
    approve: Annotated[bool, typer.Option(help="Approve it yourself too")] = True,
    member: Member = None,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Propose admitting a library; print the proposal id (the proposer approves too)."""
    settings = _settings(data_dir, rpc)

    def go() -> int:
        if not Web3.is_address(account):
            raise InvalidInput(f"{account!r} is not an account address")
        candidate = FounderInput(library, tier, country, Web3.to_checksum_address(account))
        with Instance(settings.instance_config()) as instance:
            signer = _acting(instance, member)
            contracts = instance.require_contracts()
            proposal_id = contracts.propose_admission(
                instance.member_keys(signer).account, candidate
            )
            err.print(
                _approve(instance, signer, proposal_id, approve=approve, execute=True),
                highlight=False,
            )
            return proposal_id

    sys.stdout.write(f"{_run(go)}\n")


@members_app.command("approve")
def members_approve(
    proposal_id: Annotated[int, typer.Argument(min=1, help="The proposal id")],
    execute: Annotated[bool, typer.Option(help="Execute once enough members approved")] = True,
    member: Member = None,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Approve an admission proposal; execute it when it has enough approvals."""
    settings = _settings(data_dir, rpc)

    def go() -> str:
        with Instance(settings.instance_config()) as instance:
            signer = _acting(instance, member)
            return _approve(instance, signer, proposal_id, approve=True, execute=execute)

    err.print(_run(go), highlight=False)


@members_app.command("execute")
def members_execute(
    proposal_id: Annotated[int, typer.Argument(min=1, help="The proposal id")],
    member: Member = None,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Admit the candidate of a proposal that has enough approvals."""
    settings = _settings(data_dir, rpc)

    def go() -> str:
        with Instance(settings.instance_config()) as instance:
            signer = _acting(instance, member)
            return _approve(instance, signer, proposal_id, approve=False, execute=True)

    err.print(_run(go), highlight=False)


# -- licences ----------------------------------------------------------------------------


@licences_app.command("issue")
def licences_issue(
    terms_file: Annotated[
        Path,
        typer.Option("--terms", help="Terms as the profile's JSON, or an ODRL 2.2 JSON-LD policy"),
    ],
    member: Member = None,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Issue a licence (version 1) from a terms file; print its id."""
    from ledger.licence_json import terms_from_json
    from ledger.odrl_read import terms_from_odrl
    from ledger.registration import issue_licence

    settings = _settings(data_dir, rpc)

    def go() -> int:
        try:
            doc: Any = json.loads(terms_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {terms_file} as JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise InvalidInput(f"{terms_file} is not a JSON object")
        is_odrl = "@context" in doc or "permission" in doc
        terms = terms_from_odrl(doc) if is_odrl else terms_from_json(doc)
        with Instance(settings.instance_config()) as instance:
            signer = _acting(instance, member)
            licence_id, version = issue_licence(
                instance, instance.member_keys(signer).account, terms
            )
        err.print(f"{signer} issued licence {licence_id} version {version}", highlight=False)
        return licence_id

    sys.stdout.write(f"{_run(go)}\n")


# -- peers -------------------------------------------------------------------------------


def _peers_file(data_dir: Path | None) -> Path:
    settings = _settings(data_dir)
    return settings.peers_file or settings.data_dir / "peers.json"


@peers_app.command("set")
def peers_set(
    library: Annotated[str, typer.Argument(help="The member's library id")],
    url: Annotated[str, typer.Argument(help="The base URL of its libshare service")],
    data_dir: DataDir = None,
) -> None:
    """Say where a member's instance answers federated requests [file: LIBSHARE_PEERS_FILE]."""

    def go() -> Path:
        path = _peers_file(data_dir)
        peers = load_peers(path)
        peers[library] = url.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_peers(path, peers)
        return path

    path = _run(go)
    err.print(f"{library} -> {url} in {path}", highlight=False)


@peers_app.command("list")
def peers_list(data_dir: DataDir = None, rpc: Rpc = None) -> None:
    """The peers, and the account the chain registers for each (or that it is no member)."""
    settings = _settings(data_dir, rpc)

    def go() -> list[tuple[str, str, str]]:
        peers = load_peers(_peers_file(data_dir))
        with Instance(settings.instance_config()) as instance:
            instance.catch_up()
            accounts = {m.library_id: m.account for m in _members(instance)}
        return [(lib, url, accounts.get(lib, "NOT A MEMBER")) for lib, url in peers.items()]

    for library, url, account in _run(go):
        console.print(f"{library:<16} {url}  {account}", highlight=False)


# -- audit reconcile ---------------------------------------------------------------------

EXIT_RECONCILED, EXIT_MISMATCH, EXIT_UNVERIFIABLE = 0, 1, 2


@audit_app.command("reconcile")
def audit_reconcile(
    first: Annotated[Path, typer.Argument(help="One member's `libshare audit export`")],
    second: Annotated[Path, typer.Argument(help="Another member's export")],
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
    """Verify two trails against the chain, then match every federated answer to its receipt.

    Exit 0 reconciled, 1 a mismatch or a tampered trail (each finding named), 2 could not
    verify. Needs no key: reads the chain and the deployment record, writes nothing.
    """
    try:
        reports, results = _reconcile(first, second, data_dir, rpc, deployment_file)
    except ProofError as exc:
        sys.stdout.write(f"TAMPERED: {exc.message}\n")
        raise typer.Exit(EXIT_MISMATCH) from None
    except LedgerError as exc:
        err.print(f"[red]could not verify:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_UNVERIFIABLE) from None
    except Exception as exc:  # an auditor's tool answers in one line, never with a traceback
        err.print(
            f"[red]could not verify:[/red] unexpected {type(exc).__name__}: {exc}",
            highlight=False,
        )
        raise typer.Exit(EXIT_UNVERIFIABLE) from None
    out = sys.stdout
    for path, report in reports:
        out.write(
            f"verified {path.name} ({report.header.member}): {report.entries} entries, "
            f"{report.heads} anchored heads, {report.unanchored} unanchored\n"
        )
        if report.unanchored:
            out.write(
                f"  note: {report.unanchored} entries of {report.header.member} are not "
                "anchored yet; they are checked against their own hashes only\n"
            )
    for r in results:
        verdict = "RECONCILED" if r.reconciled else "MISMATCH"
        out.write(
            f"{verdict} {r.supplier} -> {r.borrower}: {r.answers} answers, {r.receipts} "
            f"receipts, {r.matched} matched\n"
        )
        for finding in r.findings:
            out.write(f"  {finding}\n")
    if not all(r.reconciled for r in results):
        raise typer.Exit(EXIT_MISMATCH)


def _reconcile(
    first: Path,
    second: Path,
    data_dir: Path | None,
    rpc: str | None,
    deployment_file: Path | None,
) -> tuple[list[tuple[Path, ExportReport]], list[Reconciliation]]:
    settings = _settings(data_dir, rpc)
    deployment = Deployment.load(deployment_file or settings.data_dir / "deployment.json")
    chain = _open_chain(settings.chain_url, settings.data_dir)
    try:
        reports: list[tuple[Path, ExportReport]] = []
        sides: list[TrailSide] = []
        for path in (first, second):
            header = _read_header(path)
            _check_deployment(header, deployment, chain)
            heads = load_chain_heads(chain, deployment, header.account)
            try:
                lines = path.read_bytes().splitlines(keepends=True)
            except OSError as exc:
                raise _Unverifiable(f"cannot read {path} ({exc.strerror})") from exc
            try:
                reports.append((path, verify_export(lines, heads)))
            except ProofError as exc:
                raise ProofError(f"{path.name} ({header.member}): {exc.message}") from exc
            sides.append(side_from_export(lines))
        accounts = _registered(chain, deployment, sides)
        domain = Domain(deployment.chain_id, deployment.addresses["Consortium"])
        results = reconcile(sides[0], sides[1], signatures=Signatures(domain, accounts))
        return reports, results
    finally:
        chain.close()


def _registered(chain: Chain, deployment: Deployment, sides: list[TrailSide]) -> dict[str, str]:
    """The accounts the chain registers for every member the two trails name."""
    contracts = ConsortiumContracts(chain, deployment)
    named = {side.member for side in sides}
    for side in sides:
        for body in (*side.answers.values(), *side.receipts.values()):
            named.update(str(body.get(k)) for k in ("supplier", "requesting_member"))
    accounts: dict[str, str] = {}
    for library_id in sorted(named):
        try:
            account = contracts.chain.call(contracts.consortium.functions.accountOf(library_id))
        except ContractReverted as exc:
            if exc.error != "ConsortiumUnknownLibrary":
                raise
            continue  # not a member: its signatures cannot verify, which is reported
        accounts[library_id] = str(account)
    return accounts
