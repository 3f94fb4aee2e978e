"""``imgsearch reindex --collection NAME``: re-embed a collection with the workers' encoder
while searches keep using it, then switch over (``POST /api/collections/{name}/reindex``),
following its progress until the switch unless ``--no-wait``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, TextIO
from urllib.parse import quote

from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import ReindexStatus

from .client import ApiClient, _validate

#: How often the progress is asked for.
POLL_S = 1.0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``reindex`` subcommand on ``sub`` (argparse's subparsers)."""
    parser = sub.add_parser(
        "reindex",
        parents=[common],
        help="re-embed a collection (e.g. with a new model) without stopping searches",
        description=(
            "Re-embed every file of a collection into a new collection, with the model the "
            "workers' encoder runs, while searches keep using the old one; then switch the "
            "name over in one step and drop the old one. This is how a collection moves to "
            "a new CLIP_MODEL or CLIP_PRETRAINED (searches made with another model than the "
            "one that filled a collection are refused with 409). Files gone from the disk "
            "cannot be embedded again and are left out."
        ),
    )
    parser.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    parser.add_argument(
        "--no-wait", action="store_true", help="start it and return (follow it with --status)"
    )
    parser.add_argument(
        "--status", action="store_true", help="show the running or last reindex, start nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")


def format_reindex(status: ReindexStatus) -> str:
    line = (
        f"{status.collection}: {status.state}, {status.source} -> {status.target}, "
        f"{status.done}/{status.queued} files re-embedded"
    )
    if status.failed:
        line += f", {status.failed} failed (imgsearch status shows the reasons)"
    if status.error:
        line += f"; error: {status.error}"
    return line


def cmd_reindex(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # The name is a path segment: quoted whole, so it cannot name another route.
    path = f"/api/collections/{quote(args.collection, safe='')}/reindex"
    data = client.json("GET" if args.status else "POST", path)
    status = _validate(ReindexStatus, data, path)
    if not (args.status or args.no_wait):
        last = ""
        while status.state not in ("done", "failed"):
            line = format_reindex(status)
            if line != last:
                err.write(line + "\n")
                last = line
            time.sleep(POLL_S)
            data = client.json("GET", path)
            status = _validate(ReindexStatus, data, path)
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        out.write(format_reindex(status) + "\n")
    return 1 if status.state == "failed" else 0
