"""``libshare privacy``: crypto-shredding of patron pseudonyms.

Patron ids enter the trail only as HMAC pseudonyms under a per-year patron key
(:mod:`ledger.keys`). ``forget-patrons`` destroys the keys of years that have ended:
those years' pseudonyms stay in the trail, which still verifies, but can no longer be
linked to patrons.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from api.cli_common import _run, _settings, console, err
from ledger.errors import ConfigError, InvalidInput
from ledger.keys import Keystore

privacy_app = typer.Typer(
    help="Patron privacy: destroy old patron keys so old pseudonyms become unlinkable.",
    no_args_is_help=True,
)


@privacy_app.callback()
def _group() -> None:
    """Patron privacy: destroy old patron keys so old pseudonyms become unlinkable."""
    # A callback keeps this a command group even while it has a single command.


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_before(text: str, today: date) -> date:
    """``text`` as a YYYY-MM-DD date no later than ``today``, or InvalidInput."""
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(text)
        before = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--before {text!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-01-01"
        ) from None
    if before > today:
        raise InvalidInput(
            f"--before {text} is in the future (today is {today.isoformat()})",
            hint="a year still running keeps its patron key; give a date no later than today",
        )
    return before


@privacy_app.command("forget-patrons")
def forget_patrons(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="Destroy the patron keys of every year that ended before this date (YYYY-MM-DD)",
        ),
    ],
    member: Annotated[
        list[str] | None,
        typer.Option("--member", help="Library id (repeatable); default: every member here"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory [env LIBSHARE_DATA_DIR; ./libshare-data]"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Destroy old patron keys: year Y goes when 31 December Y is before --before.

    Pseudonyms of those years stay in the trail (which still verifies) but can no longer
    be linked to a patron id, and no key is ever made for those years again.
    """

    now = datetime.now(UTC)
    try:
        cutoff = _parse_before(before, now.date())
    except InvalidInput as exc:  # the command cannot run: one line, exit 2
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None

    def plan() -> tuple[Keystore, dict[str, list[int]]]:
        config = _settings(data_dir).instance_config()
        # The keystore alone (<data-dir>/keys, as ledger.instance lays it out): forgetting
        # needs neither the chain nor the index.
        keystore = Keystore(
            config.data_dir / "keys", config.keystore_password, scrypt_n=config.scrypt_n
        )
        members = member or keystore.library_ids()
        if not members:
            raise ConfigError(
                f"no member keys in {keystore.folder}",
                hint="pass the --data-dir that holds the keystore",
            )
        doomed = {m: [y for y in keystore.patron_years(m) if y < cutoff.year] for m in members}
        return keystore, doomed

    keystore, doomed = _run(plan)
    for library_id, years in doomed.items():
        shown = ", ".join(map(str, years)) or "none on disk"
        console.print(f"{library_id}: patron keys before {cutoff.year} to destroy: {shown}")
    if not yes:
        typer.confirm(
            f"Destroy these keys and refuse every year before {cutoff.year} from now on? "
            "This cannot be undone",
            abort=True,
        )

    def go() -> dict[str, list[int]]:
        return {m: keystore.forget_patron_keys(m, cutoff, now=now) for m in doomed}

    for library_id, years in _run(go).items():
        shown = ", ".join(map(str, years)) if years else "nothing (no key files of those years)"
        console.print(f"{library_id}: destroyed {shown}")
    err.print(
        f"pseudonyms of years before {cutoff.year} can no longer be linked to patrons; "
        "the trail still verifies"
    )
