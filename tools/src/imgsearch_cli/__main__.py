"""``imgsearch`` / ``python -m imgsearch_cli``: parse, run one command, map errors to
exit codes (a :class:`CliError` is one line on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .args import parse_args
from .client import ApiClient, CliError
from .commands import COMMANDS, EXIT_ERROR, EXIT_INTERRUPTED

#: What an interrupted command leaves running on the server.
INTERRUPTED_NOTES = {
    "index": " (the folder may have been queued: imgsearch status shows the queue)",
    "reindex": " (a reindex keeps running on the server: imgsearch reindex --status shows it)",
    "watch": " (stopped watching; a batch queued keeps running on the server)",
}


def run(args: argparse.Namespace, client: ApiClient, out: TextIO, err: TextIO) -> int:
    """Run the parsed command on ``client``; its exit status, errors as one line."""
    try:
        return COMMANDS[args.command](client, args, out, err)
    except CliError as exc:
        err.write(f"imgsearch: error: {exc.message}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Following a batch has its own message (commands.follow); this is any other
        # moment, e.g. while a folder is being queued.
        err.write(f"\ninterrupted{INTERRUPTED_NOTES.get(args.command, '')}\n")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with ApiClient(args.api, api_key=args.api_key, timeout=args.timeout) as client:
        return run(args, client, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
