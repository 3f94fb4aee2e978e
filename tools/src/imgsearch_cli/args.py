"""The ``imgsearch`` command line: its options, their environment defaults, and the
cross-checks argparse cannot express. Usage errors exit with status 2."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.imaging import dotted_extensions
from imgsearch_common.schemas import MAX_LIMIT, MAX_SEARCH_COLLECTIONS, MatchMode

from . import duplicates, reindex

DEFAULT_API = "http://localhost:8000"
#: The API's ``SearchOptions.match_mode`` values, in the order ``--help`` lists them.
MATCH_MODES: tuple[str, ...] = typing.get_args(MatchMode)


class CliSettings(BaseSettings):
    """Environment defaults of the client: ``IMGSEARCH_API`` and ``API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    imgsearch_api: str = DEFAULT_API
    api_key: SecretStr | None = None


def normalise_extensions(values: Sequence[str] | None) -> list[str] | None:
    """``["jpg", ".PNG"]`` -> ``[".jpg", ".PNG"]``: the original system wrote them with a dot."""
    if values is None:
        return None
    return dotted_extensions(values)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser(settings: CliSettings | None = None) -> argparse.ArgumentParser:
    settings = settings if settings is not None else CliSettings()
    key = settings.api_key.get_secret_value() if settings.api_key else None

    # The connection options are accepted before and after the subcommand. The copy on
    # each subcommand defaults to SUPPRESS: argparse copies a subparser's defaults over
    # what the main parser already parsed, which would drop `imgsearch --api X status`.
    def connection_options(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
        def default(value: object) -> object:
            return value if with_defaults else argparse.SUPPRESS

        parser.add_argument(
            "--api",
            default=default(settings.imgsearch_api),
            help=f"base URL of the search API (env IMGSEARCH_API; now {settings.imgsearch_api})",
        )
        parser.add_argument(
            "--api-key",
            default=default(key),
            help="API key for indexing, sent as X-API-Key (env API_KEY)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=default(120.0),
            help="seconds one HTTP request may take (default 120)",
        )

    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, with_defaults=False)

    parser = argparse.ArgumentParser(
        prog="imgsearch",
        description="Command-line client of the semantic image search API.",
    )
    connection_options(parser, with_defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = sub.add_parser(
        "index",
        parents=[common],
        help="index a folder of images and follow the progress",
        description=(
            "Ask the server to index every image in a folder and show the progress until the "
            "batch is finished. DIR is a path on the server's disk; it is sent as an absolute "
            "path, so run this on the server's machine or give the server's path. "
            "Compatible with index_and_run.py: it takes the same --images-dir DIR, "
            "--batch-size N (ignored: the server batches) and --extensions .jpg .png .webp. "
            "Ctrl-C stops following the batch, not the batch: imgsearch batch ID follows it "
            "again."
        ),
    )
    index.add_argument("dir", nargs="?", metavar="DIR", help="folder of images to index")
    index.add_argument(
        "--images-dir",
        dest="images_dir",
        metavar="DIR",
        help="same as DIR (as index_and_run.py spells it)",
    )
    index.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    index.add_argument(
        "--extensions",
        nargs="+",
        metavar="EXT",
        help="file extensions to index, e.g. .jpg .png .webp (default: the server's list)",
    )
    index.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=(
            "accepted for compatibility with index_and_run.py and ignored: batching is "
            "automatic on the server (the encoder batches across requests)"
        ),
    )
    index.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="only the folder itself, not its sub-folders",
    )
    index.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="queue the batch, print its id and return without following it",
    )
    index.add_argument(
        "--sync",
        action="store_true",
        help="also take out of the index the files under DIR that are gone, and follow "
        "those that moved (no re-encoding); unchanged files are skipped either way",
    )

    batch = sub.add_parser(
        "batch",
        parents=[common],
        help="show an indexing batch's progress, and follow it until it is finished",
        description=(
            "Show the progress of the batch ID (as imgsearch index prints it) and follow it "
            "until it is finished, then list its failed files with their reasons. Exit 1 "
            "when files failed."
        ),
    )
    batch.add_argument("batch_id", metavar="ID", help="the batch's id")
    batch.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="print its state once, without following it",
    )

    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a folder and keep its index in sync",
        description=(
            "Queue DIR with --sync now, then again after every burst of changes under it "
            "(added, changed, moved or deleted photos), once nothing changed for --debounce "
            "seconds and the previous batch is done. DIR is a folder on this machine, queued "
            "as the same path on the server: run it on the server's machine. Ctrl-C stops."
        ),
    )
    watch.add_argument("dir", metavar="DIR", help="folder of images to follow")
    watch.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    watch.add_argument(
        "--extensions",
        nargs="+",
        metavar="EXT",
        help="file extensions to index, e.g. .jpg .png (default: the server's list)",
    )
    watch.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="only the folder itself, not its sub-folders",
    )
    watch.add_argument(
        "--debounce",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds without a change before the folder is queued (default %(default)s)",
    )

    search = sub.add_parser(
        "search",
        parents=[common],
        help="search with an image file, an image URL or a text",
        description="Search with a local image file, an image URL (--url) or a text (--text).",
    )
    search.add_argument("image", nargs="?", metavar="IMAGE", help="local image file")
    search.add_argument("--text", help="search by text instead of an image")
    search.add_argument("--url", help="search with an image the server fetches from this URL")
    search.add_argument("--limit", type=_limit, default=10, help="1-100 (default %(default)s)")
    search.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    search.add_argument(
        "--collections",
        action="append",
        metavar="A,B",
        help="search these collections instead of --collection, results merged by score "
        f"(names separated by commas, or the option repeated; at most {MAX_SEARCH_COLLECTIONS})",
    )
    search.add_argument(
        "--min-score", type=float, help="drop results scoring below this (default: keep all)"
    )
    search.add_argument(
        "--no-full", dest="full", action="store_false", help="no whole-image matching"
    )
    search.add_argument(
        "--no-partial", dest="partial", action="store_false", help="no region matching"
    )
    search.add_argument(
        "--remove-text", action="store_true", help="remove text overlays from the query image"
    )
    search.add_argument("--enhance", action="store_true", help="enhance the query image")
    search.add_argument(
        "--match-mode",
        choices=MATCH_MODES,
        help="image and URL queries: region (your image may be a part of an indexed one), "
        "contains (an indexed image may appear inside yours) or auto (both; slower). "
        "Default: the server's (DEFAULT_MATCH_MODE, region unless set)",
    )
    search.add_argument("--json", action="store_true", help="print the server's JSON answer")

    sub.add_parser("status", parents=[common], help="show index and queue counts")
    duplicates.add_parser(sub, common)
    reindex.add_parser(sub, common)

    sub.add_parser(
        "collections",
        parents=[common],
        help="list the collections: images, regions, the model that filled each",
    )
    delete = sub.add_parser(
        "delete",
        parents=[common],
        help="delete an image from a collection",
        description=(
            "Delete the image ID (a result's id) and its regions from a collection: no search "
            "finds it again and its file is no longer served. The file itself stays on disk."
        ),
    )
    delete.add_argument("image_id", metavar="ID", help="the image's id, as a search shows it")
    delete.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    drop = sub.add_parser(
        "drop",
        parents=[common],
        help="delete a collection and everything in it",
        description=(
            "Delete the collection NAME: every image and region in it (the files stay on "
            "disk). Asks for confirmation unless --yes."
        ),
    )
    drop.add_argument("name", metavar="NAME", help="the collection")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    requeue = sub.add_parser(
        "requeue",
        parents=[common],
        help="put dead letters back in the queue",
        description=(
            "Move dead letters (jobs that failed for good) back into the queue, oldest first, "
            "in a new batch per collection, and print how many. Entries that were not jobs "
            "(malformed_job) are never requeued; a job whose file is gone fails again as "
            "missing_file."
        ),
    )
    requeue.add_argument(
        "--reason",
        dest="reasons",
        action="extend",
        nargs="+",
        metavar="R",
        help="only dead letters with this reason, e.g. retries_exhausted (repeatable; "
        "default: every reason)",
    )
    requeue.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N (default: all that match)"
    )
    return parser


def _check_index_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.dir and args.images_dir and args.dir != args.images_dir:
        parser.error("give the folder once: either DIR or --images-dir")
    args.dir = args.dir or args.images_dir
    # `--extensions .jpg .png /photos` swallows the folder: nargs="+" is greedy.
    swallowed = [e for e in args.extensions or [] if "/" in e or "\\" in e]
    if swallowed or not args.dir:
        hint = " (put DIR before --extensions, or use --images-dir DIR)" if args.extensions else ""
        parser.error(f"index: a folder is required (DIR or --images-dir DIR){hint}")
    args.extensions = normalise_extensions(args.extensions)


def _check_search_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = [name for name in ("image", "text", "url") if getattr(args, name) is not None]
    if len(given) != 1:
        parser.error("search: give exactly one of IMAGE, --text or --url")
    if not (args.full or args.partial):
        parser.error("search: --no-full and --no-partial leave nothing to match")
    if args.text is not None:
        image_only = [
            flag
            for flag, given in (
                ("--remove-text", args.remove_text),
                ("--enhance", args.enhance),
                ("--match-mode", args.match_mode is not None),
            )
            if given
        ]
        if image_only:
            verb = "applies" if len(image_only) == 1 else "apply"
            parser.error(
                f"search: {' and '.join(image_only)} {verb} to image and URL queries only, "
                "not to --text"
            )
    if args.collections is not None:
        names = [n.strip() for value in args.collections for n in value.split(",") if n.strip()]
        if not names:
            parser.error("search: --collections needs at least one name")
        args.collections = list(dict.fromkeys(names))


def parse_args(
    argv: Sequence[str] | None = None, settings: CliSettings | None = None
) -> argparse.Namespace:
    """Parse and cross-check the arguments; usage errors exit with status 2."""
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if not args.api.startswith(("http://", "https://")):
        parser.error(f"--api must be an http(s) URL, got {args.api!r}")
    args.api = args.api.rstrip("/")
    if args.command == "index":
        _check_index_args(parser, args)
    elif args.command == "watch":
        args.extensions = normalise_extensions(args.extensions)
    elif args.command == "search":
        _check_search_args(parser, args)
    return args
