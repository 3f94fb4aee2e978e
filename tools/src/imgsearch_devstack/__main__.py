"""``make run`` (``python -m imgsearch_devstack``): start Redis, the encoder, the search API
and the workers locally.

Reads the same environment variables as the services (README lists them).
With ``--images-dir DIR`` it also queues that folder and shows the progress.
Ctrl-C stops everything, workers first.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from .stack import LocalStack, StackConfig


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m imgsearch_devstack", description=__doc__)
    parser.add_argument("--images-dir", type=Path, help="queue this folder for indexing")
    parser.add_argument("--collection", default=os.environ.get("COLLECTION", "default"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    args = parser.parse_args()

    data_dir = Path(os.environ.get("DATA_DIR", "./data")).resolve()
    config = StackConfig(
        data_dir=data_dir,
        api_port=int(os.environ.get("API_PORT", "8000")),
        api_host=os.environ.get("API_HOST", "127.0.0.1"),
        encoder_port=int(os.environ.get("ENCODER_PORT", "8001")),
        redis_port=int(os.environ.get("REDIS_PORT", "6379")),
        redis_url=os.environ.get("REDIS_URL") or None,
        workers=args.workers,
        worker_base_port=int(os.environ.get("WORKER_BASE_PORT", "8010")),
        internal_token=os.environ.get("INTERNAL_TOKEN") or secrets.token_urlsafe(32),
    )
    stack = LocalStack(config)
    # Ctrl-C and SIGTERM both stop the stack (SIGINT is re-armed: a shell starting us in
    # the background would otherwise have set it to "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"starting the stack (data and logs in {data_dir}) ...", flush=True)
    try:
        stack.start()
        print(
            f"\n  web page and REST API: http://localhost:{config.api_port}/"
            f"\n  API docs:              http://localhost:{config.api_port}/docs"
            f"\n  logs:                  {stack.log_dir}"
            "\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        if args.images_dir:
            cmd = [
                sys.executable, "-m", "imgsearch_cli",
                "--api", stack.api_url, "index", str(args.images_dir.resolve()),
                "--collection", args.collection,
            ]  # fmt: skip
            subprocess.run(cmd, check=False)  # noqa: S603 - our own CLI, fixed arguments
        while True:
            for proc in stack.procs():
                if not proc.alive():
                    print(f"{proc.name} stopped unexpectedly; see {proc.log_path}", flush=True)
                    print(proc.log_tail(), flush=True)
                    return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
