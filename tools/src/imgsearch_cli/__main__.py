"""``imgsearch`` / ``python -m imgsearch_cli``: parse, run one command, map errors to
exit codes (a :class:`CliError` is one line on stderr, never a traceback)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .args import parse_args
from .client import ApiClient, CliError
from .commands import COMMANDS, EXIT_ERROR, EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        with ApiClient(args.api, api_key=args.api_key, timeout=args.timeout) as client:
            return COMMANDS[args.command](client, args, out, err)
    except CliError as exc:
        err.write(f"imgsearch: error: {exc.message}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("\ninterrupted")
        if args.command == "index":
            err.write(" (the batch keeps running on the server)")
        err.write("\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
