"""Incremental indexing: what queuing a folder again costs (``make bench-incremental``).

A program, not a test (``python -m benchmarks.incremental --out DIR``). It starts the stack
as processes (``LocalStack`` on free ports, the default settings, ``CLIP_PRETRAINED=random``)
and, for each corpus, times three rounds of ``POST /api/index/folder`` until the batch is
finished:

- ``first``     the folder is indexed from scratch;
- ``unchanged`` the same folder queued again, nothing changed on disk;
- ``sync``      queued again with ``sync`` after ``--changes`` files of each kind were
                deleted, moved (into a sub-folder), changed (new bytes) and added.

Two corpora, because a first indexing of a thousand photos takes most of an hour on two
cores while the re-queue's cost does not depend on how many windows an image has:

- ``default layout``: ``--files`` (default 100) images cut from the real photos, 160-320 px
  (each about 15 windows, the default layout): the three rounds at the same N, the ratio
  the target is about (unchanged re-queue <= 5 % of the first indexing);
- ``thumbnails``: ``--thumbnails`` (default 1000) cuts of at most 32 px (no window: one
  crop each), so that a thousand files index in minutes: the re-queue of 1 000 files
  (target <= 10 s). Its ratio is a harsher one (its first indexing is about 16 x cheaper
  per file than a photo's).

Each round reports its seconds, the batch's counts (new, changed, unchanged, moved,
removed, queued) and the crops the encoder encoded meanwhile (its
``imgsearch_encoder_items_encoded_total``). It prints a table, writes
``OUT/incremental-<time>.json`` and exits 1 when a round's counts are not the expected ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from imgsearch_common.ids import content_hash
from imgsearch_common.settings import CommonSettings
from imgsearch_devstack import LocalStack, StackConfig, wait_batch
from imgsearch_devstack.photos import load_photos

from .campaign_data import cut_image, write_corpus
from .runs import interrupt_on_signals, machine

log = logging.getLogger("benchmarks.incremental")

STACK_ENV = {"CLIP_PRETRAINED": "random", "LOG_LEVEL": "WARNING", "TORCH_THREADS": "2"}
COUNTS = ("new", "changed", "unchanged", "moved", "removed", "queued")
ROUNDS = ("first", "unchanged", "sync")
THUMB_SIDE = 32


def write_thumbnails(
    photos: dict[str, Image.Image], folder: Path, count: int, seed: int
) -> list[Path]:
    """``count`` JPEG cuts of the photos, long side ``THUMB_SIDE`` px, of distinct content."""
    rng = random.Random(seed)
    names = sorted(photos)
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    out: list[Path] = []
    while len(out) < count:
        name = rng.choice(names)
        img = cut_image(photos[name], rng)
        img.thumbnail((THUMB_SIDE, THUMB_SIDE))
        path = folder / f"{len(out):05d}-{name}.jpg"
        img.save(path, format="JPEG", quality=rng.randint(80, 95))
        sha = content_hash(path.read_bytes())
        if sha in seen:
            continue
        seen.add(sha)
        out.append(path)
    return out


def change_files(
    files: list[Path], k: int, make: Callable[[Path, int], None], rng: random.Random
) -> None:
    """Delete ``k`` files, move ``k`` into ``moved/``, rewrite ``k`` with new content
    (``make(path, i)``) and add ``k`` new ones, all distinct."""
    picked = rng.sample(files, 3 * k)
    deleted, moved, changed = picked[:k], picked[k : 2 * k], picked[2 * k :]
    for path in deleted:
        path.unlink()
    for path in moved:
        target = path.parent / "moved" / path.name
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
    for i, path in enumerate(changed):
        make(path, i)
    folder = files[0].parent
    for i in range(k):
        make(folder / f"added-{i:03d}.jpg", k + i)


class Run:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.images = (work / "images").resolve()

    def execute(self) -> dict[str, Any]:
        args = self.args
        photos = load_photos()
        layout = self.images / "layout"
        cuts = [f.path for f in write_corpus(photos, [layout], args.files, args.seed)]
        thumbs = write_thumbnails(photos, self.images / "thumbnails", args.thumbnails, args.seed)
        rng = random.Random(args.seed + 1)

        def fresh_cut(path: Path, i: int) -> None:
            [f] = write_corpus(photos, [self.work / "spare"], 1, args.seed + 1000 + i)
            shutil.move(f.path, path)

        def fresh_thumb(path: Path, i: int) -> None:
            [f] = write_thumbnails(photos, self.work / f"spare-{i}", 1, args.seed + 2000 + i)
            shutil.move(f, path)

        cache = CommonSettings().data_dir / "bench-cache" / "onnx"
        env = {
            **STACK_ENV,
            "INDEX_ROOTS": str(self.images),
            "ONNX_CACHE_DIR": str(cache),
            **dict(kv.split("=", 1) for kv in args.env),
        }
        config = StackConfig.on_free_ports(self.work / "stack", workers=args.workers, extra_env=env)
        corpora: dict[str, dict[str, Any]] = {}
        with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=600) as c:
            self.encoder_url = stack.encoder_url
            for name, folder, files, make in (
                ("default layout", layout, cuts, fresh_cut),
                ("thumbnails", self.images / "thumbnails", thumbs, fresh_thumb),
            ):
                log.info("%s: %d files", name, len(files))
                collection = "incr-" + name.split()[0]
                rounds = {"first": self.round(c, folder, collection, sync=False)}
                rounds["unchanged"] = self.round(c, folder, collection, sync=False)
                change_files(files, args.changes, make, rng)
                rounds["sync"] = self.round(c, folder, collection, sync=True)
                counts = c.get("/api/status").json()["collections"].get(collection, {})
                corpora[name] = {
                    "files": len(files),
                    # Deleted k, added k: as many images as files at the start.
                    "images_after_sync": counts.get("full_images"),
                    "rounds": rounds,
                    "unchanged_over_first": round(
                        rounds["unchanged"]["seconds"] / rounds["first"]["seconds"], 4
                    ),
                    "expected": self.expected(len(files), args.changes),
                }
        bad = [
            f"{name} {r}: {corpus['rounds'][r]['counts']} != {corpus['expected'][r]}"
            for name, corpus in corpora.items()
            for r in ROUNDS
            if corpus["rounds"][r]["counts"] != corpus["expected"][r]
        ]
        bad += [
            f"{name}: {corpus['images_after_sync']} images after the sync, not {corpus['files']}"
            for name, corpus in corpora.items()
            if corpus["images_after_sync"] != corpus["files"]
        ]
        return {
            "benchmark": "incremental",
            "when": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "stack_env": env,
            "corpora": corpora,
            "mismatches": bad,
            "ok": not bad,
        }

    @staticmethod
    def expected(n: int, k: int) -> dict[str, dict[str, int]]:
        zero = dict.fromkeys(COUNTS, 0)
        return {
            "first": {**zero, "new": n, "queued": n},
            "unchanged": {**zero, "unchanged": n},
            "sync": {
                **zero,
                "new": k,
                "changed": k,
                "unchanged": n - 3 * k,
                "moved": k,
                "removed": k,
                "queued": 2 * k,
            },
        }

    def round(
        self, client: httpx.Client, folder: Path, collection: str, *, sync: bool
    ) -> dict[str, Any]:
        crops = self.encoded()
        t0 = time.perf_counter()
        r = client.post(
            "/api/index/folder",
            json={"path": str(folder), "collection": collection, "sync": sync},
        )
        if r.status_code != 202:
            raise RuntimeError(f"queueing {folder} failed: {r.status_code} {r.text}")
        answer = r.json()
        queued_s = time.perf_counter() - t0
        status = wait_batch(client, answer["batch_id"], timeout=self.args.timeout, poll_s=0.1)
        seconds = time.perf_counter() - t0
        return {
            "seconds": round(seconds, 3),
            "queue_request_s": round(queued_s, 3),
            "counts": {k: int(answer[k]) for k in COUNTS},
            "done": status.done,
            "failed": status.failed,
            "crops_encoded": round(self.encoded() - crops),
        }

    def encoded(self) -> float:
        text = httpx.get(self.encoder_url + "/metrics", timeout=30).text
        found = re.search(
            r'^imgsearch_encoder_items_encoded_total\{kind="image"\} (\S+)$', text, re.M
        )
        return float(found.group(1)) if found else float("nan")


def table(report: dict[str, Any]) -> str:
    lines = [
        f"incremental indexing: {report['args']['workers']} workers, random weights, machine "
        f"load {report['machine']['load_average_1_5_15']}",
        "",
        f"{'corpus':<16}{'files':>6}  {'round':<10}{'s':>9}{'queue s':>9}{'crops':>7}"
        f"{'new':>6}{'chg':>5}{'same':>6}{'mv':>4}{'rm':>4}{'queued':>7}",
    ]
    for name, corpus in report["corpora"].items():
        for r, row in corpus["rounds"].items():
            n = row["counts"]
            lines.append(
                f"{name:<16}{corpus['files']:>6}  {r:<10}{row['seconds']:>9.2f}"
                f"{row['queue_request_s']:>9.2f}{row['crops_encoded']:>7}{n['new']:>6}"
                f"{n['changed']:>5}{n['unchanged']:>6}{n['moved']:>4}{n['removed']:>4}"
                f"{n['queued']:>7}"
            )
        lines.append(
            f"{'':<16}{'':>6}  unchanged / first = {corpus['unchanged_over_first'] * 100:.2f} %"
        )
    if report["mismatches"]:
        lines += ["", "counts not as expected:", *("  " + m for m in report["mismatches"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--files", type=int, default=100, help="default-layout images")
    parser.add_argument("--thumbnails", type=int, default=1000, help="32 px images")
    parser.add_argument("--changes", type=int, default=2, help="files of each kind of change")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per batch (s)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="more stack settings"
    )
    args = parser.parse_args(argv)
    if min(args.files, args.thumbnails) < 3 * args.changes + 1:
        parser.error("each corpus needs more than 3 x --changes files")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    interrupt_on_signals()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-incremental-", dir=args.out))
    try:
        report = Run(args, work).execute()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"incremental-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwritten: {path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
