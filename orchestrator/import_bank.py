"""``python -m orchestrator.import_bank DIR``: validates a question bank and imports it.

Without ``DATABASE_URL`` it only validates. With it, it applies the migrations and
stores the bank; a changed item becomes a new version, an unchanged one is left
alone. Exit status 0 on success, 2 when the bank is invalid (the message names the
file, the item and each bad field), 1 when PostgreSQL cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from pathlib import Path

from common.errors import Unavailable
from orchestrator.bank import BankError, Item, load_bank
from orchestrator.db import Database


def summary(items: list[Item]) -> str:
    """Item counts by skill area and by kind, one line each."""
    areas = collections.Counter(i.skill_area for i in items)
    kinds = collections.Counter(i.kind for i in items)
    return (
        f"{len(items)} items\n"
        + "".join(f"  {area}: {n}\n" for area, n in sorted(areas.items()))
        + "  kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    )


async def _import(url: str, items: list[Item]) -> list[str]:
    db = await Database.connect(url, startup_timeout_s=10)
    try:
        await db.migrate()
        return [f"{v.item_id}@v{v.version}" for v in await db.import_items(items)]
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.import_bank", description=__doc__.split("\n\n")[0])
    parser.add_argument("bank_dir", type=Path, help="directory of bank YAML files")
    parser.add_argument("--check", action="store_true", help="only validate, even if DATABASE_URL is set")
    args = parser.parse_args(argv)
    try:
        items = load_bank(args.bank_dir)
    except BankError as exc:
        print(f"invalid question bank: {exc}", file=sys.stderr)
        return 2
    print(summary(items))
    url = os.environ.get("DATABASE_URL")
    if args.check or not url:
        print("valid (not imported: " + ("--check" if args.check else "DATABASE_URL is not set") + ")")
        return 0
    try:
        versions = asyncio.run(_import(url, items))
    except Unavailable as exc:
        print(f"cannot import: {exc.message}", file=sys.stderr)
        return 1
    print("imported: " + ", ".join(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
