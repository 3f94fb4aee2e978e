"""The subcommands (``status``, ``index``, ``batch``, ``search``, ``requeue``,
``collections``, ``delete``, ``drop``): each takes the client, the parsed arguments and
the two output streams, and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from imgsearch_common.schemas import (
    BatchStatus,
    FolderIndexRequest,
    RequeueRequest,
    SearchResponse,
    TextSearchRequest,
    UrlSearchRequest,
)

from .client import ApiClient, CliError, _validate
from .duplicates import cmd_duplicates
from .format import (
    format_collections,
    format_interrupted,
    format_progress,
    format_queued,
    format_search_footer,
    format_status,
    format_summary,
    format_table,
    printable,
)
from .polling import follow_batch
from .reindex import cmd_reindex
from .watch import watch_folder

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

#: How often a non-TTY gets a progress line (s); a terminal's line is redrawn at every poll.
PLAIN_PROGRESS_EVERY_S = 5.0


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
    request = FolderIndexRequest(
        path=str(folder),
        collection=args.collection,
        extensions=args.extensions,
        recursive=args.recursive,
        sync=args.sync,
    )
    return index_folder(client, request, out, err, wait=args.wait)


def index_folder(
    client: ApiClient,
    request: FolderIndexRequest,
    out: TextIO,
    err: TextIO,
    *,
    wait: bool = True,
    fate: str | None = None,
) -> int:
    """Queue ``request``'s folder and, with ``wait``, follow its batch to the end (what
    ``imgsearch index`` and ``make run IMAGES_DIR=`` do). ``fate``: what becomes of the
    batch after a Ctrl-C, see :func:`format_interrupted`."""
    here = Path(request.path).is_dir()
    try:
        queued = client.index_folder(request)
    except CliError as exc:
        if here or exc.transient:
            raise
        if exc.code == "not_found":
            raise CliError(
                f"no such folder: {request.path} (neither on this machine nor on the server "
                f"at {client.base_url})",
                code=exc.code,
            ) from None
        raise CliError(
            f"{exc.message} (and {request.path} is not a folder on this machine)", code=exc.code
        ) from None
    try:
        if not here:
            # A remote server's own disk: the folder is there, not here.
            err.write(f"note: {request.path} is not on this machine; the server has it\n")
        out.write(format_queued(queued) + "\n")
        out.flush()
        if not wait:
            return EXIT_OK
        return follow(client, queued.batch_id, out, err, fate=fate)
    except KeyboardInterrupt:  # queued, before the following began
        err.write(format_interrupted(queued.batch_id, None, fate) + "\n")
        return EXIT_INTERRUPTED


def follow(
    client: ApiClient, batch_id: str, out: TextIO, err: TextIO, *, fate: str | None = None
) -> int:
    """Show a batch's progress until it is finished, then its summary: exit 0, or 1 when
    files failed. Ctrl-C stops the following (not the batch): one message that says so
    (``fate``: what becomes of the batch instead, when the server stops too), exit 130."""
    progress = ProgressPrinter(err)
    started = time.monotonic()
    last: BatchStatus | None = None
    #: Files already processed when the following began (``imgsearch batch`` of a batch
    #: half-way): the rate counts only those processed since.
    before = 0

    def show(status: BatchStatus) -> None:
        nonlocal last, before
        if last is None and not status.finished:
            before = status.done + status.failed
        last = status
        line = format_progress(status, time.monotonic() - started, seen_before=before)
        progress.show(line, final=status.finished)

    try:
        # A restarting server or a dropped connection (a transient CliError): keep
        # watching for a while.
        status = follow_batch(
            lambda: client.batch(batch_id),
            on_status=show,
            transient=lambda exc: isinstance(exc, CliError) and exc.transient,
        )
    except KeyboardInterrupt:
        progress.close()
        err.write(format_interrupted(batch_id, last, fate) + "\n")
        err.flush()
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    elapsed = time.monotonic() - started
    out.write(format_summary(status, elapsed, seen_before=before) + "\n")
    return EXIT_SOME_FAILED if status.failed else EXIT_OK


def cmd_batch(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """A batch's state; unless ``--no-wait``, followed until it is finished."""
    if args.wait:
        return follow(client, args.batch_id, out, err)
    status = client.batch(args.batch_id)
    out.write(format_summary(status, None) + "\n")
    return EXIT_SOME_FAILED if status.failed else EXIT_OK


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "use_full_matching": args.full,
        "use_partial_matching": args.partial,
        "limit": args.limit,
        "collection": args.collection,
    }
    if args.collections:
        options["collections"] = args.collections
    if args.min_score is not None:
        options["min_score"] = args.min_score
    if args.match_mode is not None:  # image and URL queries only (args.py checks it)
        options["match_mode"] = args.match_mode
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
                if key != "collections"
            }
            if args.collections:
                fields["collections"] = ",".join(args.collections)
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
    # The raw answer's kinds: a server from before ``kind`` sends none (nothing is
    # derived then), whatever default the schema may give the field.
    kinds = [item.get("kind") if isinstance(item, dict) else None for item in data["results"]]
    table = format_table(result.results, with_collection=bool(args.collections), kinds=kinds)
    out.write(table + "\n")
    out.write(format_search_footer(result) + "\n")
    return EXIT_OK


def cmd_requeue(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        request = RequeueRequest(reasons=args.reasons, limit=args.limit)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise CliError(f"invalid requeue: {where}: {first.get('msg', '')}") from None
    result = client.requeue(request)
    plural = "" if result.requeued == 1 else "s"
    out.write(f"requeued {result.requeued} dead letter{plural}\n")
    for batch in result.batches:
        out.write(
            f"batch {batch.batch_id}: {batch.queued} queued "
            f"in collection {printable(batch.collection)}\n"
        )
    return EXIT_OK


def cmd_collections(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(format_collections(client.collections().collections) + "\n")
    return EXIT_OK


def cmd_delete(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    deleted = client.delete_image(args.image_id, args.collection)
    out.write(f"deleted image {printable(deleted.id)} from {printable(deleted.collection)}\n")
    return EXIT_OK


def cmd_drop(
    client: ApiClient,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    stdin: TextIO | None = None,
) -> int:
    """Drop a collection, after the user confirms (``y``/``yes`` on ``stdin``) unless
    ``--yes``; any other answer, or none (end of input), drops nothing (exit 1)."""
    name = args.name
    if not args.yes:
        listed = {c.name: c for c in client.collections().collections}
        if name not in listed:
            # Worded as the API words its 404 collection_not_found (drop --yes gets that).
            known = ", ".join(repr(printable(n)) for n in listed)
            rest = f"the collections are: {known}" if known else "there are no collections yet"
            raise CliError(
                f"no collection {printable(name)!r}; {rest}", code="collection_not_found"
            )
        c = listed[name]
        err.write(
            f"drop collection {printable(name)!r}: {_counted(c.images, c.windows)}? "
            "This cannot be undone (the files stay on disk). [y/N] "
        )
        err.flush()
        answer = (stdin or sys.stdin).readline().strip().lower()
        if answer not in ("y", "yes"):
            err.write("not dropped\n")
            return EXIT_SOME_FAILED
    dropped = client.drop_collection(name)
    out.write(
        f"dropped collection {printable(dropped.name)}: "
        f"{_counted(dropped.images, dropped.windows)}\n"
    )
    return EXIT_OK


def _counted(images: int, windows: int) -> str:
    """``1 image, 14 regions``."""
    return (
        f"{images} image{'' if images == 1 else 's'}, {windows} region{'' if windows == 1 else 's'}"
    )


def cmd_watch(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    folder = Path(args.dir).expanduser().resolve()
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder here: watch follows a folder on this machine")
    request = FolderIndexRequest(
        path=str(folder),
        collection=args.collection,
        extensions=args.extensions,
        recursive=args.recursive,
        sync=True,
    )
    return watch_folder(client, request, out, err, debounce_s=args.debounce)


COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace, TextIO, TextIO], int]] = {
    "status": cmd_status,
    "index": cmd_index,
    "batch": cmd_batch,
    "search": cmd_search,
    "requeue": cmd_requeue,
    "collections": cmd_collections,
    "delete": cmd_delete,
    "drop": cmd_drop,
    "watch": cmd_watch,
    "duplicates": cmd_duplicates,
    "reindex": cmd_reindex,
}
