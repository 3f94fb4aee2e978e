"""``make run`` (``python -m imgsearch_devstack``): start Redis, the encoder, the search API
and the workers locally, and keep them running.

Reads the same environment variables as the services (README lists them).
With ``--images-dir DIR`` it also queues that folder and shows the progress (a folder that
does not exist stops it before anything starts). Ctrl-C while it indexes stops the stack;
the files not yet indexed stay queued in Redis (append-only, under DATA_DIR) and are indexed
at the next start.
A child that crashes is started again (capped exponential backoff, logged with its exit
status and the end of its log). Ctrl-C or SIGTERM stops everything, workers first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from imgsearch_cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    ApiClient,
    CliError,
    CliSettings,
    index_folder,
)
from imgsearch_common.schemas import FolderIndexRequest
from imgsearch_common.settings import env_list

from .stack import LocalStack, StackConfig

log = logging.getLogger("imgsearch_devstack")


def index_roots(env: Mapping[str, str], data_dir: Path, images_dir: Path | None) -> list[str]:
    """The API's ``INDEX_ROOTS`` under ``make run``: the user's (``:``-separated or a JSON
    list), the folder given to index and the upload folder, as absolute paths."""
    given = env_list(env.get("INDEX_ROOTS", ""), ":")
    roots = [str(r) for r in given] if isinstance(given, list) else []
    if images_dir is not None:
        roots.append(str(images_dir))
    roots.append(env.get("UPLOAD_DIR") or str(data_dir / "uploads"))
    return list(dict.fromkeys(str(Path(r).expanduser().resolve()) for r in roots))


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be indexed, in words (None: it can be looked at)."""
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "a file, not a folder"
    if not os.access(folder, os.R_OK | os.X_OK):
        return "a folder this user may not read (permission denied)"
    return None


def index_images(stack: LocalStack, images_dir: Path, collection: str) -> int:
    """Queue ``images_dir`` and follow it (the CLI's ``index``); its exit status. An error
    is one line, and the stack keeps running (the page can index another folder)."""
    c = stack.config
    if c.redis_url is None:
        kept = f"in Redis's append-only file under {c.data_dir / 'redis'}"
        resumes = "indexing resumes at the next `make run` with the same DATA_DIR"
    else:
        kept = "in the Redis at REDIS_URL"
        resumes = "indexing resumes at the next `make run` if that Redis keeps its data"
    fate = f"stops with the stack: the files not yet indexed stay queued {kept}, and {resumes}"
    key = CliSettings().api_key
    request = FolderIndexRequest(path=str(images_dir), collection=collection)
    try:
        with ApiClient(stack.api_url, api_key=key.get_secret_value() if key else None) as client:
            return index_folder(client, request, sys.stdout, sys.stderr, fate=fate)
    except CliError as exc:
        print(f"error: indexing {images_dir}: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not a number") from None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m imgsearch_devstack", description=__doc__)
    parser.add_argument("--images-dir", type=Path, help="queue this folder for indexing")
    parser.add_argument("--collection", default=os.environ.get("COLLECTION", "default"))
    parser.add_argument("--workers", type=int, default=_int_env("WORKERS", 2))
    args = parser.parse_args()
    # Our own messages (ports, Redis, restarts); the libraries' (httpx's per-request
    # lines of the health checks) only from warnings up.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    log.setLevel(logging.INFO)

    images_dir: Path | None = args.images_dir.expanduser().resolve() if args.images_dir else None
    if images_dir is not None and (problem := folder_problem(images_dir)):
        given = str(args.images_dir)
        shown = given if given == str(images_dir) else f"{given} ({images_dir})"
        print(f"error: IMAGES_DIR={shown}: {problem}; nothing was started", file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("DATA_DIR", "./data")).resolve()
    config = StackConfig(
        data_dir=data_dir,
        api_port=_int_env("API_PORT", 8000),
        api_host=os.environ.get("API_HOST", "127.0.0.1"),
        internal_port=_int_env("INTERNAL_PORT", 8002),
        encoder_port=_int_env("ENCODER_PORT", 8001),
        redis_port=_int_env("REDIS_PORT", 6379),
        redis_url=os.environ.get("REDIS_URL") or None,
        workers=args.workers,
        worker_base_port=_int_env("WORKER_BASE_PORT", 8010),
        internal_token=os.environ.get("INTERNAL_TOKEN") or secrets.token_urlsafe(32),
        extra_env={"INDEX_ROOTS": json.dumps(index_roots(os.environ, data_dir, images_dir))},
        supervise=True,
        port_fallback=True,
    )
    stack = LocalStack(config)
    # Ctrl-C and SIGTERM both stop the stack (SIGINT is re-armed: a shell starting us in
    # the background would otherwise have set it to "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"starting the stack (data and logs in {data_dir}) ...", flush=True)
    interrupted = False  # Ctrl-C while the folder was being indexed
    try:
        stack.start()
        c = stack.config  # with the ports actually used
        print(
            f"\n  web page and REST API: http://localhost:{c.api_port}/"
            f"\n  API docs:              http://localhost:{c.api_port}/docs"
            f"\n  logs:                  {stack.log_dir}"
            "\n  A crashed service is restarted; Ctrl-C stops everything.\n",
            flush=True,
        )
        if images_dir is not None and index_images(stack, images_dir, args.collection) == (
            EXIT_INTERRUPTED
        ):
            interrupted = True
            raise KeyboardInterrupt
        while True:
            time.sleep(1.0)  # the supervisor's thread watches the children
    except KeyboardInterrupt:
        print("\nstopping (workers first) ...", flush=True)
        return EXIT_INTERRUPTED if interrupted else 0
    except RuntimeError as exc:  # a port in use, a service that cannot start: no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not leave children behind half-way through stopping.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if any(True for _ in stack.procs()):
            stack.stop()
            print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
