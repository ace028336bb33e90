"""Write the next Alembic revision from what changed in the SQLModel tables.

    python scripts/new_migration.py "add cost shares"            # against a temporary SQLite
    python scripts/new_migration.py "add cost shares" --url URL  # against that (empty) database

The database is first brought to the current head, then Alembic's autogenerate compares
it with the models and writes ``ledger/migrations/versions/NNNN_<message>.py`` (NNNN the
next number), formatted with ruff. Read it before committing: autogenerate does not see
renames or data moves, and its SQLite code uses batch operations. A run that finds no
difference writes nothing and exits 1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from ledger import migrations

VERSIONS = migrations.HERE / "versions"


def next_revision() -> str:
    numbers = [int(m.group(1)) for p in VERSIONS.glob("*.py") if (m := re.match(r"(\d+)_", p.name))]
    return f"{max(numbers, default=0) + 1:04d}"


def write(message: str, url: str) -> Path | None:
    """Autogenerate the next revision against ``url``; None if the models match the head."""
    cfg = migrations.config(url=url)
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    command.upgrade(cfg, "head")
    rev_id = next_revision()
    script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    if "def upgrade() -> None:\n    pass" in path.read_text():
        path.unlink()
        return None
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if Path(ruff).exists():
        for step in (["format"], ["check", "--fix"], ["format"]):
            subprocess.run([ruff, *step, "--quiet", str(path)], check=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message", help="what changed, e.g. 'add cost shares'")
    parser.add_argument("--url", help="an empty database to diff against (default: temp SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="libshare-migration-") as tmp:
        path = write(args.message, args.url or f"sqlite:///{Path(tmp) / 'head.sqlite'}")
    if path is None:
        print("the models equal the schema at the current head: nothing to migrate")
        return 1
    print(path)
    print(
        "review it (renames, data moves, server defaults), then run "
        "pytest tests/ledger/test_migrations.py",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
