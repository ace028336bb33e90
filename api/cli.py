"""The ``libshare`` command line.

Every command turns a :class:`ledger.errors.LedgerError` into one line on stderr and a
non-zero exit: 1 when the command ran and found a problem, 2 when it could not run
(bad configuration, an unreachable node, a damaged data dir).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli_audit import audit_app
from api.cli_common import DataDir, Rpc, _run, _settings, console, err
from api.cli_consortium import consortium_cli
from api.cli_privacy import privacy_app
from api.cli_status import status
from ledger.errors import InvalidInput
from ledger.instance import Instance

app = typer.Typer(
    help="libshare: a rights and sharing ledger for library consortia.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def demo(
    data_dir: DataDir = None,
    rpc: Rpc = None,
    checks: Annotated[int, typer.Option(min=1, max=100_000, help="Share requests to run")] = 200,
) -> None:
    """Run a three-library consortium end to end and verify every trail against the chain."""
    from api.demo import run_demo

    settings = _settings(data_dir, rpc)

    def go() -> bool:
        with Instance(settings.instance_config(demo=True)) as instance:
            return run_demo(instance, console, checks=checks)

    if not _run(go):
        raise typer.Exit(1)


@app.command()
def cid(
    path: Annotated[Path, typer.Argument(help="File to address")],
    profile: Annotated[
        str, typer.Option(help="kubo-v0 | unixfs-v1-2025 | v1-raw-256k")
    ] = "kubo-v0",
) -> None:
    """Print the CID that Kubo's `ipfs add --only-hash` gives for PATH."""
    from ledger.access import parse_enum
    from ledger.cid import Profile, cid_of_file

    def go() -> str:
        return str(cid_of_file(path, parse_enum(Profile, profile, "profile"), sha256=False).cid)

    sys.stdout.write(_run(go) + "\n")


@app.command()
def serve(
    data_dir: DataDir = None,
    rpc: Rpc = None,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = True,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs) over the data dir."""
    import uvicorn

    from api.app import create_app

    settings = _settings(data_dir, rpc)
    config = _run(settings.instance_config)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=access_log)


resources_app = typer.Typer(help="Register what your library shares.")
app.command("status")(status)
app.add_typer(resources_app, name="resources")
car_app = typer.Typer(help="CAR v1 archives of stored resources, importable by any IPFS node.")
app.add_typer(car_app, name="car")


@resources_app.command("add")
def resources_add(
    files: Annotated[list[Path], typer.Argument(help="Files to register")],
    member: Annotated[str, typer.Option(help="Your library id, e.g. CN-XJTU")],
    licence: Annotated[int, typer.Option(help="Licence id (0: none yet)")] = 0,
    media_type: Annotated[
        str, typer.Option(help="text | image | audio | video | 3d_object | dataset")
    ] = "text",
    public: Annotated[bool, typer.Option(help="Store unencrypted (open access)")] = False,
    data_dir: DataDir = None,
    rpc: Rpc = None,
) -> None:
    """Store (sealed unless --public) and register files, many per chain transaction."""
    from ledger.registration import NewResource, register_resources

    settings = _settings(data_dir, rpc)

    def go() -> None:
        with Instance(settings.instance_config()) as instance:
            instance.sync()
            items = [
                NewResource(path, media_type, {"title": path.stem}, licence, public=public)
                for path in files
            ]
            for res in register_resources(instance, instance.member_keys(member), items):
                console.print(f"{res.resource_id}  {res.cid}  {res.size} bytes  {res.title}")

    _run(go)


@car_app.command("export")
def car_export(
    resource_ids: Annotated[list[str], typer.Argument(help="Resource ids (0x…)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .car file to write")],
    data_dir: DataDir = None,
) -> None:
    """Write the stored blocks of resources as one CAR v1 file (`ipfs dag import` reads it)."""
    from ledger.car import write_car
    from ledger.errors import NotFound
    from ledger.store import ResourceContentRow
    from ledger.types import Cid

    settings = _settings(data_dir)

    def go() -> int:
        with Instance(settings.instance_config()) as instance:
            roots = []
            with instance.db.session() as session:
                for rid in resource_ids:
                    row = session.get(ResourceContentRow, rid)
                    if row is None:
                        raise NotFound(
                            f"resource {rid} is not stored on this instance",
                            hint="export it from the owning member's instance",
                        )
                    roots.append(Cid(row.stored_cid))
            tmp = output.with_suffix(output.suffix + ".part")
            try:
                with tmp.open("wb") as out:
                    written = write_car(roots, instance.content.get_block, out)
                tmp.replace(output)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise InvalidInput(
                    f"cannot write {output} ({exc.strerror})", hint="choose a writable path"
                ) from exc
            return written

    written = _run(go)
    err.print(f"wrote {output} ({written} bytes, {len(resource_ids)} roots)")


keys_app = typer.Typer(help="API keys: one per (member, role), shown once, stored hashed.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    member: Annotated[str, typer.Option(help="Library id, e.g. CN-XJTU")],
    role: Annotated[str, typer.Option(help="admin | member | delivery | auditor")],
    label: Annotated[str, typer.Option(help="A note on who holds it")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print it once."""
    settings = _settings(data_dir)

    def go() -> str:
        with Instance(settings.instance_config()) as instance:
            instance.sync()
            token, principal = instance.apikeys.create(member, role, label=label)
            err.print(
                f"created {principal.role.value} key {principal.key_id} for {principal.member}; "
                "it is shown once — store it now"
            )
            return token

    sys.stdout.write(_run(go) + "\n")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List API keys (never their secrets)."""
    settings = _settings(data_dir)

    def go() -> None:
        with Instance(settings.instance_config()) as instance:
            for k in instance.apikeys.list():
                state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
                console.print(f"{k.key_id}  {k.member:<12} {k.role.value:<9} {state}  {k.label}")

    _run(go)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke an API key at once."""
    settings = _settings(data_dir)

    def go() -> None:
        with Instance(settings.instance_config()) as instance:
            instance.apikeys.revoke(key_id)

    _run(go)
    err.print(f"revoked {key_id}")


@app.command()
def version() -> None:
    """Print the libshare version."""
    from ledger import __version__

    console.print(__version__)


app.add_typer(audit_app, name="audit")
app.add_typer(privacy_app, name="privacy")
app.add_typer(consortium_cli)  # init, consortium, members, licences, peers, audit reconcile


def main() -> None:
    app()


if __name__ == "__main__":
    main()
