"""``libshare status``: chain, index lag, outbox depth, content store and trail anchors."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table

from api.cli_common import DataDir, Rpc, _run, _settings, console
from ledger.instance import Instance
from ledger.status import InstanceStatus, instance_status


def status(
    data_dir: DataDir = None,
    rpc: Rpc = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead")] = False,
) -> None:
    """The instance at a glance; exit 0 when all is well, 1 when something needs attention."""
    settings = _settings(data_dir, rpc)

    def go() -> InstanceStatus:
        with Instance(settings.instance_config()) as instance:
            return instance_status(instance)

    found = _run(go)
    problems = found.problems()
    if as_json:
        body = dataclasses.asdict(found)
        body.update(index_lag=found.index_lag, outbox_depth=found.outbox_depth, problems=problems)
        console.print_json(json.dumps(body))
    else:
        _show(found, problems)
    raise typer.Exit(1 if problems else 0)


def _show(found: InstanceStatus, problems: list[str]) -> None:
    head = "not answering" if found.chain_block is None else f"block {found.chain_block}"
    indexed = "nothing yet" if found.indexed_block is None else f"block {found.indexed_block}"
    lag = "" if found.index_lag is None else f" ({found.index_lag} behind)"
    console.print(f"chain    {found.chain}: {head}")
    console.print(f"index    {indexed}{lag}")
    states = ", ".join(f"{n} {state}" for state, n in found.outbox.items() if n)
    console.print(f"outbox   {found.outbox_depth} waiting" + (f" ({states})" if states else ""))
    console.print(f"content  {found.content_store}")
    if found.trails:
        table = Table("trail", "entries", "anchored", "not yet anchored", "anchored in")
        for t in found.trails:
            where = f"block {t.anchored_block}, tx {t.anchored_tx}" if t.anchored_tx else "—"
            table.add_row(
                t.library_id, str(t.entries), str(t.anchored_size), str(t.unanchored), where
            )
        console.print(table)
    else:
        console.print("trails   none yet")
    for line in problems:
        console.print(f"[yellow]attention:[/yellow] {line}", highlight=False)
    if not problems:
        console.print("[green]all well[/green]")
