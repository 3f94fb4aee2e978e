"""Thumbnails: what the first request for one costs, what a cached one costs, and their
bytes (``make bench-thumbnails``).

A program, not a test (``python -m benchmarks.thumbnails --out DIR``). The search API app in
this process (its own Edge shard in a temporary folder; no Redis, no encoder: a thumbnail
needs neither), its points handed over through the internal listener as a worker hands
them, naming 4096 x 4096 pictures made from a real photo: a JPEG, a PNG, and a JPEG of
grainy noise (the worst case for the byte bound). For each picture and size it times, over
``--rounds`` rounds, ``GET /api/image/{id}/thumbnail`` with the cache emptied (``first``),
again (``cached``) and with the ETag (``304``), end to end through the ASGI app. Prints a
table, writes ``OUT/thumbnails-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pydantic import SecretStr

from imgsearch_api.app import create_app
from imgsearch_api.settings import ApiSettings
from imgsearch_common.ids import content_hash, image_id
from imgsearch_devstack import free_port
from imgsearch_devstack.photos import load_photos

from .runs import machine

TOKEN = "bench-thumbnails-token"  # noqa: S105
INTERNAL_PORT = 8002
COLLECTION = "bench-thumbnails"
SIZES = (256, 512)


def pictures(folder: Path, side: int) -> dict[str, Path]:
    """``side`` x ``side`` pictures from the astronaut photo, by kind."""
    photo = load_photos()["astronaut"].convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    grain = np.random.default_rng(1).normal(0, 40, (side, side, 3))
    noisy = Image.fromarray(np.clip(np.asarray(photo) + grain, 0, 255).astype(np.uint8))
    out = {"photo.jpg": photo, "photo.png": photo, "grain.jpg": noisy}
    paths = {}
    for name, img in out.items():
        path = folder / name
        img.save(path, quality=92) if name.endswith(".jpg") else img.save(path, compress_level=6)
        paths[name] = path
    return paths


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    photos = work / "photos"
    photos.mkdir()
    files = pictures(photos, args.side)
    settings = ApiSettings(
        data_dir=work / "data",
        index_roots=[photos],
        internal_token=SecretStr(TOKEN),
        internal_port=INTERNAL_PORT,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: not needed
        allowed_hosts=("api",),
        cpu_threads=args.cpu_threads,
    )
    app = create_app(settings)
    rows: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            ids = {name: image_id(content_hash(p.read_bytes())) for name, p in files.items()}
            full = [
                {"id": ids[n], "vector": [1.0] + [0.0] * 511, "payload": _payload(p)}
                for n, p in files.items()
            ]
            r = await client.post(
                f"http://api:{INTERNAL_PORT}/internal/v1/upsert",
                json={"collection": COLLECTION, "full": full, "windows": []},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            r.raise_for_status()
            cache = settings.data_dir / "thumbnails"
            for name, path in files.items():
                for size in SIZES:
                    url = f"/api/image/{ids[name]}/thumbnail"
                    params: dict[str, str | int] = {"size": size, "collection": COLLECTION}
                    times: dict[str, list[float]] = {"first": [], "cached": [], "304": []}
                    for _ in range(args.rounds):
                        shutil.rmtree(cache, ignore_errors=True)
                        first, s = await _timed(client.get(url, params=params))
                        times["first"].append(s)
                        _, s = await _timed(client.get(url, params=params))
                        times["cached"].append(s)
                        tag = {"If-None-Match": first.headers["etag"]}
                        same, s = await _timed(client.get(url, params=params, headers=tag))
                        times["304"].append(s)
                        assert (first.status_code, same.status_code) == (200, 304), first.text
                    with Image.open(io.BytesIO(first.content)) as thumb:
                        shape = thumb.size
                    rows.append(
                        {
                            "picture": name,
                            "source_bytes": path.stat().st_size,
                            "size": size,
                            "thumbnail": list(shape),
                            "bytes": len(first.content),
                            **{
                                f"{k}_ms": round(statistics.median(v) * 1000, 2)
                                for k, v in times.items()
                            },
                        }
                    )
    return {"args": vars(args) | {"out": str(args.out)}, "machine": machine(), "rows": rows}


def _payload(path: Path) -> dict[str, Any]:
    with Image.open(path) as img:
        width, height = img.size
    return {
        "stored_path": str(path),
        "original_path": str(path),
        "filename": path.name,
        "file_size": path.stat().st_size,
        "indexed_at": time.time(),
        "width": width,
        "height": height,
        "collection": COLLECTION,
    }


async def _timed(request: Any) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = await request
    return r, time.perf_counter() - t0


def table(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        f"thumbnails of {a['side']} x {a['side']} pictures, CPU_THREADS={a['cpu_threads']}, "
        f"median of {a['rounds']} rounds, machine load {report['machine']['load_average_1_5_15']}",
        "",
        f"{'picture':<11}{'source KB':>10}{'size':>6}{'thumb':>10}{'KB':>7}"
        f"{'first ms':>10}{'cached ms':>11}{'304 ms':>8}",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['picture']:<11}{r['source_bytes'] / 1000:>10.0f}{r['size']:>6}"
            f"{'x'.join(map(str, r['thumbnail'])):>10}{r['bytes'] / 1000:>7.1f}"
            f"{r['first_ms']:>10.1f}{r['cached_ms']:>11.1f}{r['304_ms']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--side", type=int, default=4096, help="the pictures' side (px)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-thumbnails-", dir=args.out))
    try:
        report = asyncio.run(measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"thumbnails-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
