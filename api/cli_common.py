"""What every ``libshare`` command shares: settings, the consoles, one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from api.settings import Settings
from ledger.errors import ConfigError, LedgerError, StorageError

console = Console()
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory [env LIBSHARE_DATA_DIR; ./libshare-data]"),
]
Rpc = Annotated[
    str | None,
    typer.Option(
        "--rpc", help="EVM JSON-RPC URL instead of the embedded chain [env LIBSHARE_CHAIN_URL]"
    ),
]


def _settings(data_dir: Path | None = None, rpc: str | None = None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting LIBSHARE_{field.upper()} is invalid: {first['msg']}") from exc
    if data_dir is not None:
        settings.data_dir = data_dir
    if rpc is not None:
        settings.chain_url = rpc
    return settings


def _run(action: Callable[[], T]) -> T:
    """Run ``action``; print a LedgerError as one line and exit non-zero."""
    try:
        return action()
    except (ConfigError, StorageError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except LedgerError as exc:
        code = 2 if type(exc).__name__ == "ChainUnavailable" else 1
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
