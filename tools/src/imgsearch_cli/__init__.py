"""``imgsearch`` — the command-line client of the search API.

Subcommands::

    imgsearch index DIR [--collection NAME] [--extensions .jpg .png ...] [--no-wait]
    imgsearch batch ID [--no-wait]
    imgsearch search IMAGE | --text "..." | --url URL [--limit N] [--match-mode M] [--json] ...
    imgsearch status
    imgsearch requeue [--reason R ...] [--limit N]
    imgsearch collections
    imgsearch delete ID [--collection NAME]
    imgsearch drop NAME [--yes]

``imgsearch index`` is compatible with ``index_and_run.py --images-dir DIR --batch-size N
--extensions ...``: it asks the server to index a folder on the *server's*
disk (usually the same machine), then follows the batch with a progress bar until it is
finished.

One module per job: ``format`` (what the user reads: small pure functions, tested
exactly), ``client`` (:class:`ApiClient`, thin HTTP), ``args`` (the command line),
``polling`` (:func:`follow_batch`, also used by the local launcher), ``commands`` (the
subcommands) and ``__main__`` (``main``: ``python -m imgsearch_cli``).

Exit codes: 0 success; 1 the batch finished but some files failed, or a drop was not
confirmed; 2 usage, connection or server errors; 130 interrupted (a batch being followed
keeps running on the server: ``imgsearch batch ID`` follows it again).
"""

from .args import DEFAULT_API, CliSettings, build_parser, normalise_extensions, parse_args
from .client import MAX_ATTEMPTS, ApiClient, CliError
from .commands import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    ProgressPrinter,
    cmd_batch,
    cmd_collections,
    cmd_delete,
    cmd_drop,
    cmd_index,
    cmd_requeue,
    cmd_search,
    cmd_status,
    follow,
    index_folder,
)
from .format import (
    BAR_WIDTH,
    best_box,
    format_box,
    format_collections,
    format_duration,
    format_interrupted,
    format_model,
    format_progress,
    format_search_footer,
    format_status,
    format_summary,
    format_table,
    match_words,
    printable,
    result_path,
    short_path,
)
from .polling import MAX_POLL_FAILURES, POLL_INTERVAL_S, follow_batch

__all__ = [
    "BAR_WIDTH",
    "COMMANDS",
    "DEFAULT_API",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "MAX_ATTEMPTS",
    "MAX_POLL_FAILURES",
    "POLL_INTERVAL_S",
    "ApiClient",
    "CliError",
    "CliSettings",
    "ProgressPrinter",
    "best_box",
    "build_parser",
    "cmd_batch",
    "cmd_collections",
    "cmd_delete",
    "cmd_drop",
    "cmd_index",
    "cmd_requeue",
    "cmd_search",
    "cmd_status",
    "follow",
    "follow_batch",
    "format_box",
    "format_collections",
    "format_duration",
    "format_interrupted",
    "format_model",
    "format_progress",
    "format_search_footer",
    "format_status",
    "format_summary",
    "format_table",
    "index_folder",
    "match_words",
    "normalise_extensions",
    "parse_args",
    "printable",
    "result_path",
    "short_path",
]
