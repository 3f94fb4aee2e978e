"""``imgsearch`` — the command-line client of the search API.

Subcommands::

    imgsearch index DIR [--collection NAME] [--extensions .jpg .png ...] [--no-wait]
    imgsearch search IMAGE | --text "..." | --url URL [--limit N] [--json] ...
    imgsearch status

``imgsearch index`` replaces the seed's ``index_and_run.py --images-dir DIR --batch-size N
--extensions ...``: it asks the server to index a folder on the *server's* disk (usually the
same machine), then follows the batch with a progress bar until it is finished.

The HTTP parts are thin (:class:`ApiClient`); what the user reads is built by small pure
functions (:func:`format_table`, :func:`format_progress`, :func:`format_summary`,
:func:`format_status`) so it can be tested exactly.

Exit codes: 0 success; 1 the batch finished but some files failed; 2 usage, connection or
server errors; 130 interrupted (the batch keeps running on the server).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .ids import DEFAULT_COLLECTION
from .schemas import (
    MAX_LIMIT,
    BatchQueued,
    BatchStatus,
    FolderIndexRequest,
    SearchResponse,
    SearchResult,
    TextSearchRequest,
    UrlSearchRequest,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

DEFAULT_API = "http://localhost:8000"
#: Attempts of one request while the server answers 429/503 with ``Retry-After``.
MAX_ATTEMPTS = 5
#: Longest back-off we honour from a ``Retry-After`` header (s).
MAX_RETRY_AFTER_S = 30.0
#: Progress polling: how often we ask, how often a non-TTY gets a line, how many
#: consecutive failed polls we tolerate (a restarting server) before giving up.
POLL_INTERVAL_S = 1.0
PLAIN_PROGRESS_EVERY_S = 5.0
MAX_POLL_FAILURES = 10
BAR_WIDTH = 24

M = TypeVar("M", bound=BaseModel)


class CliSettings(BaseSettings):
    """Environment defaults of the client: ``IMGSEARCH_API`` and ``API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    imgsearch_api: str = DEFAULT_API
    api_key: SecretStr | None = None


class CliError(Exception):
    """A failure the user can act on; printed as one line, never as a traceback."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        #: The server may answer differently soon (unreachable, 5xx): worth asking again.
        self.transient = transient


# --- pure formatting ------------------------------------------------------------------


def printable(text: str) -> str:
    """Replace control characters so a server string cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_box(box: Sequence[int]) -> str:
    return ",".join(str(v) for v in box)


def best_box(result: SearchResult) -> str:
    """The highest-scoring matched box as ``x0,y0,x1,y1``, or ``-`` when there is none."""
    if not result.matched_boxes:
        return "-"
    best = max(result.matched_boxes, key=lambda b: b.score)
    return format_box(best.box)


def _render_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def format_table(results: Sequence[SearchResult]) -> str:
    """Search results as a plain-text table (rank, score, match, regions, file, best box)."""
    if not results:
        return "no results"
    headers = ("#", "score", "match", "regions", "filename", "best box")
    rows = [
        (
            str(rank),
            f"{r.score:.4f}",
            r.match_type,
            str(r.matched_regions),
            printable(r.metadata.filename) if r.metadata else r.id,
            best_box(r),
        )
        for rank, r in enumerate(results, start=1)
    ]
    return _render_columns(headers, rows, right={0, 1, 3})


def format_search_footer(response: SearchResponse) -> str:
    """``"3 results in 41.2 ms (decode 2.0, encode 30.1)"``."""
    n = len(response.results)
    text = f"{n} result{'' if n == 1 else 's'} in {response.processing_time_ms:.1f} ms"
    if response.timings_ms:
        split = ", ".join(f"{printable(k)} {v:.1f}" for k, v in response.timings_ms.items())
        text += f" ({split})"
    return text


def format_progress(status: BatchStatus, elapsed: float, width: int = BAR_WIDTH) -> str:
    """One progress line: bar, processed/total, percent, failures, rate and ETA.

    "Processed" counts done and failed files alike: both are finished work. The rate is
    measured over ``elapsed`` seconds of watching, so it is the rate this client saw.
    """
    processed = status.done + status.failed
    total = status.total
    fraction = 1.0 if total <= 0 else min(processed / total, 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    rate = processed / elapsed if elapsed > 0 else 0.0
    if status.finished:
        eta = "done"
    elif rate > 0:
        eta = f"ETA {format_duration(max(total - processed, 0) / rate)}"
    else:
        eta = "ETA --:--"
    failed = f" ({status.failed} failed)" if status.failed else ""
    return f"[{bar}] {processed}/{total} {fraction * 100:5.1f}%{failed}  {rate:.1f} img/s  {eta}"


def format_summary(status: BatchStatus, elapsed: float) -> str:
    """What a finished (or abandoned) batch did, then each failed file with its reason."""
    processed = status.done + status.failed
    rate = processed / elapsed if elapsed > 0 else 0.0
    lines = [
        f"batch {status.batch_id} ({printable(status.collection)}): "
        f"{status.done} indexed, {status.failed} failed, {status.pending} pending "
        f"of {status.total} in {format_duration(elapsed)} ({rate:.1f} img/s)"
    ]
    if status.errors:
        lines.append("failed files:")
        lines.extend(
            f"  {printable(e.path)}: {printable(e.reason)}: {printable(e.message)}"
            for e in status.errors
        )
    unlisted = status.failed - len(status.errors)
    if unlisted > 0:
        lines.append(f"  ... and {unlisted} more not listed by the server")
    return "\n".join(lines)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) else "?"


def format_status(data: Mapping[str, Any]) -> str:
    """The ``/api/status`` answer as text. Missing parts show as ``?``, not as an error."""
    indexed = _mapping(data.get("indexed_images"))
    lines = [
        f"status: {printable(str(data.get('status', '?')))}",
        f"indexed: {_count(indexed.get('full_images'))} images, "
        f"{_count(indexed.get('partial_images'))} regions",
    ]
    collections = data.get("collections") or {}
    if isinstance(collections, Mapping) and collections:
        rows = [
            (
                printable(str(name)),
                _count(_mapping(counts).get("full_images")),
                _count(_mapping(counts).get("partial_images")),
            )
            for name, counts in sorted(collections.items())
        ]
        table = _render_columns(("collection", "images", "regions"), rows, right={1, 2})
        lines.extend("  " + row for row in table.splitlines())
    queue = data.get("queue")
    if isinstance(queue, Mapping):
        lines.append(
            f"queue: {_count(queue.get('pending'))} pending, "
            f"{_count(queue.get('dead_letters'))} dead letters"
        )
    return "\n".join(lines)


def normalise_extensions(values: Sequence[str] | None) -> list[str] | None:
    """``["jpg", ".PNG"]`` -> ``[".jpg", ".PNG"]``: the seed wrote them with a dot."""
    if values is None:
        return None
    return [v if v.startswith(".") else f".{v}" for v in (v.strip() for v in values) if v]


# --- argument parsing -----------------------------------------------------------------


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
            "Replaces the seed's: index_and_run.py --images-dir DIR --batch-size N "
            "--extensions .jpg .png .webp"
        ),
    )
    index.add_argument("dir", nargs="?", metavar="DIR", help="folder of images to index")
    index.add_argument(
        "--images-dir", dest="images_dir", metavar="DIR", help="same as DIR (seed spelling)"
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
            "accepted for compatibility with the seed and ignored: batching is automatic "
            "on the server (the encoder batches across requests)"
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
    search.add_argument("--json", action="store_true", help="print the server's JSON answer")

    sub.add_parser("status", parents=[common], help="show index and queue counts")
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
    if args.text is not None and (args.remove_text or args.enhance):
        parser.error("search: --remove-text and --enhance apply to image queries only")


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
    elif args.command == "search":
        _check_search_args(parser, args)
    return args


# --- HTTP -----------------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": {"code", "message"}}`` as one line, or the status line."""
    try:
        error = response.json()["error"]
        text = f"{error['code']}: {error['message']}"
        details = [
            f"{'.'.join(str(part) for part in d.get('loc', []))}: {d.get('msg', '')}"
            for d in error.get("details") or []
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"
    if details:
        text += f" ({'; '.join(details)})"
    return printable(text)


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in (429, 503):
        return None
    try:
        return min(float(response.headers.get("Retry-After", "")), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


class ApiClient:
    """The few calls the CLI makes. Transport errors and 4xx/5xx become :class:`CliError`.

    A 429/503 with ``Retry-After`` (a full queue) is retried after the advised delay, a
    bounded number of times: backpressure is part of the API.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                raise CliError(
                    f"the search API at {self.base_url} did not answer in time (--timeout)",
                    transient=True,
                ) from None
            except httpx.TransportError as exc:
                raise CliError(
                    f"cannot reach the search API at {self.base_url} ({exc.__class__.__name__}); "
                    "is it running? (--api / IMGSEARCH_API)",
                    transient=True,
                ) from None
            delay = _retry_after(response)
            if delay is not None and attempt < MAX_ATTEMPTS:
                self._sleep(delay)
                continue
            if response.status_code == 401:
                raise CliError(f"{_error_text(response)}; give the key with --api-key or API_KEY")
            if response.status_code >= 400:
                raise CliError(
                    f"{method} {path} failed: {_error_text(response)}",
                    transient=response.status_code >= 500,
                )
            return response
        raise AssertionError("unreachable")  # the loop returns or raises

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{method} {path}: the server did not answer with JSON") from None

    def status(self) -> dict[str, Any]:
        data = self.json("GET", "/api/status")
        if not isinstance(data, dict):
            raise CliError("GET /api/status: unexpected answer")
        return data

    def index_folder(self, request: FolderIndexRequest) -> BatchQueued:
        data = self.json("POST", "/api/index/folder", json=request.model_dump())
        return _validate(BatchQueued, data, "POST /api/index/folder")

    def batch(self, batch_id: str) -> BatchStatus:
        data = self.json("GET", f"/api/index/batches/{batch_id}")
        return _validate(BatchStatus, data, "GET /api/index/batches")

    def search_image(self, path: Path, fields: Mapping[str, str]) -> httpx.Response:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return self.request(
            "POST",
            "/api/search/by-image",
            data=dict(fields),
            files={"file": (path.name, content, mime)},
        )

    def search_json(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        return self.request("POST", path, json=dict(body))


def _validate(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError:
        raise CliError(f"{what}: the server's answer does not match the API schema") from None


# --- commands -------------------------------------------------------------------------


class ProgressPrinter:
    """Redraws one line with ``\\r`` on a terminal; elsewhere prints a line now and then."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._clock = clock
        self._last_plain = -float("inf")
        self._width = 0
        self._open = False  # a redrawn line without its newline yet

    def show(self, line: str, final: bool = False) -> None:
        if self.tty:
            pad = " " * max(self._width - len(line), 0)
            self._width = len(line)
            self.stream.write(f"\r{line}{pad}" + ("\n" if final else ""))
            self.stream.flush()
            self._open = not final
            return
        now = self._clock()
        if final or now - self._last_plain >= PLAIN_PROGRESS_EVERY_S:
            self._last_plain = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End a half-drawn line so that what follows starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def cmd_status(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(format_status(client.status()) + "\n")
    return EXIT_OK


def cmd_index(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    folder = Path(args.dir).expanduser().resolve()
    if not folder.is_dir():
        err.write(f"note: {folder} is not a folder here; sending it as a path on the server\n")
    request = FolderIndexRequest(
        path=str(folder),
        collection=args.collection,
        extensions=args.extensions,
        recursive=args.recursive,
    )
    queued = client.index_folder(request)
    out.write(
        f"batch {queued.batch_id}: {queued.queued} files queued "
        f"in collection {printable(queued.collection)}\n"
    )
    out.flush()
    if not args.wait:
        return EXIT_OK

    progress = ProgressPrinter(err)
    started = time.monotonic()
    try:
        status = _follow_batch(client, queued.batch_id, progress, started)
    finally:
        progress.close()
    out.write(format_summary(status, time.monotonic() - started) + "\n")
    return EXIT_SOME_FAILED if status.failed else EXIT_OK


def _follow_batch(
    client: ApiClient, batch_id: str, progress: ProgressPrinter, started: float
) -> BatchStatus:
    failures = 0
    while True:
        try:
            status = client.batch(batch_id)
            failures = 0
        except CliError as exc:
            # A restarting server or a dropped connection: keep watching for a while.
            failures += 1
            if not exc.transient or failures >= MAX_POLL_FAILURES:
                raise
            time.sleep(POLL_INTERVAL_S)
            continue
        progress.show(format_progress(status, time.monotonic() - started), final=status.finished)
        if status.finished:
            return status
        time.sleep(POLL_INTERVAL_S)


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "use_full_matching": args.full,
        "use_partial_matching": args.partial,
        "limit": args.limit,
        "collection": args.collection,
    }
    if args.min_score is not None:
        options["min_score"] = args.min_score
    return options


def cmd_search(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    options = _search_options(args)
    try:
        if args.text is not None:
            body = TextSearchRequest(text=args.text, **options)
            response = client.search_json("/api/search/by-text", body.model_dump())
        elif args.url is not None:
            body_url = UrlSearchRequest(
                url=args.url, remove_text=args.remove_text, enhance_image=args.enhance, **options
            )
            response = client.search_json("/api/search/by-url", body_url.model_dump())
        else:
            fields = {
                key: str(value).lower() if isinstance(value, bool) else str(value)
                for key, value in options.items()
            }
            fields["remove_text"] = str(args.remove_text).lower()
            fields["enhance_image"] = str(args.enhance).lower()
            response = client.search_image(Path(args.image).expanduser(), fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise CliError(f"invalid search: {where}: {first.get('msg', '')}") from None

    try:
        data = response.json()
    except ValueError:
        raise CliError("the server did not answer with JSON") from None
    if args.json:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    result = _validate(SearchResponse, data, "search")
    out.write(format_table(result.results) + "\n")
    out.write(format_search_footer(result) + "\n")
    return EXIT_OK


COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace, TextIO, TextIO], int]] = {
    "status": cmd_status,
    "index": cmd_index,
    "search": cmd_search,
}


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
