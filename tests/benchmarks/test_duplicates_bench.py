"""The duplicates benchmark's truth and scoring (``benchmarks.duplicates_data``,
``benchmarks.duplicates.evaluate``): what two generated files are to each other, and how a
server's groups are counted."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

from benchmarks import duplicates_data as dd
from benchmarks.duplicates import evaluate

WHOLE = (0.0, 0.0, 1.0, 1.0)


def _g(name: str, source: str = "a", box: tuple[float, ...] = WHOLE, **kw: str) -> dd.Generated:
    pixels = kw.get("pixels", f"{source}/{name}")
    return dd.Generated(
        name,
        source,
        name,
        kw.get("tier", "near"),
        box,
        pixels,
        kw.get("content", name),  # type: ignore[arg-type]
    )


def test_relations() -> None:
    base = _g("base", pixels="a/base")
    lossless = _g("lossless", pixels="a/base")
    q40 = _g("q40")
    crop = _g("crop", box=(0.1, 0.1, 0.5, 0.5))
    inner = _g("inner", box=(0.2, 0.2, 0.4, 0.4))
    beside = _g("beside", box=(0.45, 0.45, 0.9, 0.9))
    other = _g("base", source="b")
    assert dd.relation(base, lossless) == "exact"
    assert dd.relation(base, q40) == "near"
    assert dd.relation(q40, crop) == "contained" and dd.relation(crop, q40) == "reverse"
    assert dd.relation(crop, inner) == "contained"
    assert dd.relation(crop, beside) is None  # overlapping, neither holds the other
    assert dd.relation(base, other) is None


def test_a_comment_keeps_the_jpeg_pixels() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    commented = dd.with_comment(data, b"hello")
    assert commented != data
    assert Image.open(io.BytesIO(commented)).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_generate_writes_what_it_records(tmp_path: Path) -> None:
    img = Image.effect_noise((640, 400), 40).convert("RGB")
    files = dd.generate("photo", img, tmp_path, random.Random(1))
    assert {f.variant for f in files} >= {"base", "copy", "comment", "topng", "q40", "crop12"}
    for f in files:
        assert (tmp_path / f.name).is_file()
    by = {f.variant: f for f in files}
    assert by["copy"].content == by["base"].content  # same bytes: one image in the index
    assert by["comment"].content != by["base"].content
    assert by["comment"].pixels == by["topng"].pixels == by["base"].pixels
    assert dd.relation(by["base"], by["crop25"]) == "contained"


def test_evaluate_counts_pairs_per_tier(tmp_path: Path) -> None:
    base = _g("base", pixels="a/base", content="c1", tier="base")
    copy = _g("copy", pixels="a/base", content="c1", tier="exact")
    q40 = _g("q40", content="c2")
    crop = _g("crop", box=(0.1, 0.1, 0.5, 0.5), content="c3", tier="contained")
    alone = _g("lone", source="z", content="c4", tier="base")
    stranger = dd.Generated("zz", "y", "base", "base", WHOLE, "y/zz", "c5")
    files = [base, copy, q40, crop, alone, stranger]

    def item(f: dd.Generated) -> dict[str, object]:
        return {"id": f.content, "path": str(tmp_path / f.name), "width": 1, "height": 1}

    body = {
        "groups": [
            {"tier": "exact", "items": [item(base), item(copy)], "pairs": []},
            # near: the image of base (and copy) with q40, and a wrong one with a stranger.
            {"tier": "near", "items": [item(base), item(q40), item(stranger)], "pairs": []},
            {"tier": "contained", "items": [item(q40), item(crop)], "pairs": [{"a": 0, "b": 1}]},
        ]
    }
    out = evaluate(body, files, tmp_path)
    assert (out["exact"]["tp"], out["exact"]["fp"], out["exact"]["fn"]) == (1, 0, 0)
    # base~q40, copy~q40 right; base~zz, copy~zz, q40~zz wrong.
    assert (out["near"]["tp"], out["near"]["fp"]) == (2, 3)
    assert out["near"]["recall"] == 1.0
    assert out["contained"]["precision"] == 1.0 and out["contained"]["recall_per_crop"] == 1.0
    assert out["distinct_photos_in_a_group"] == ["zz"]
