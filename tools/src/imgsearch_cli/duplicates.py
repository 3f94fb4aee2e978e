"""``imgsearch duplicates``: the copies the index holds, in tiers (``GET /api/duplicates``)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import (
    DUPLICATE_TIERS,
    MAX_DUPLICATE_GROUPS,
    DuplicateGroup,
    DuplicatePair,
    DuplicatesResponse,
)

from .client import ApiClient, _validate
from .format import format_box, printable


def _groups(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_DUPLICATE_GROUPS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DUPLICATE_GROUPS}")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``duplicates`` subcommand on ``sub`` (argparse's subparsers)."""
    parser = sub.add_parser(
        "duplicates",
        parents=[common],
        help="list the copies in a collection: exact, near and contained (crops)",
        description=(
            "Ask the server for the duplicates in a collection, in tiers: exact (the same "
            "content, or identical pixels), near (re-encoded, resized, lightly edited "
            "copies) and contained (crops of another image, with the box). Each pair says "
            "what verified it. The server scans the whole collection: on a large one, give "
            "a --timeout of minutes."
        ),
    )
    parser.add_argument("--collection", default=DEFAULT_COLLECTION, help="default: %(default)s")
    parser.add_argument(
        "--tier", choices=DUPLICATE_TIERS, help="one tier only (default: every tier)"
    )
    parser.add_argument(
        "--limit",
        type=_groups,
        default=100,
        help=f"most groups per tier, 1-{MAX_DUPLICATE_GROUPS} (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")


def _evidence(pair: DuplicatePair) -> str:
    e = pair.evidence
    parts: list[str] = [e.check]
    if e.correlation is not None:
        parts.append(f"corr {e.correlation:.3f}")
    if e.detail is not None:
        parts.append(f"detail {e.detail:.3f}")
    if e.box is not None:
        parts.append(f"box {format_box(e.box)}")
    if e.area is not None:
        parts.append(f"{100 * e.area:.0f}% of it")
    if e.clip_score is not None:
        parts.append(f"clip {e.clip_score:.3f}")
    if e.source == "file":
        parts.append("from the files")
    return ", ".join(parts)


def format_group(number: int, group: DuplicateGroup) -> str:
    """A group: its files, then each pair and what verified it."""
    lines = [f"{group.tier} #{number}: {len(group.items)} files"]
    for k, item in enumerate(group.items):
        role = "parent " if group.tier == "contained" and k == 0 else ""
        lines.append(f"  [{k}] {role}{printable(item.path)}  ({item.width}x{item.height})")
    for pair in group.pairs:
        relation = "contains" if group.tier == "contained" else "~"
        lines.append(f"      [{pair.a}] {relation} [{pair.b}]: {_evidence(pair)}")
    return "\n".join(lines)


def format_duplicates(response: DuplicatesResponse) -> str:
    counts = {tier: sum(1 for g in response.groups if g.tier == tier) for tier in response.tiers}
    summary = ", ".join(f"{n} {tier}" for tier, n in counts.items())
    lines = []
    numbers = dict.fromkeys(response.tiers, 0)
    for group in response.groups:
        numbers[group.tier] += 1
        lines.append(format_group(numbers[group.tier], group))
    footer = (
        f"{response.images} images in {printable(response.collection)!r}: {summary} groups "
        f"({response.processing_time_ms / 1000:.1f} s)"
    )
    if response.truncated:
        footer += "; a tier stopped at --limit groups: there may be more"
    return "\n".join([*lines, footer])


def cmd_duplicates(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    params: dict[str, Any] = {"collection": args.collection, "limit": args.limit}
    if args.tier:
        params["tier"] = args.tier
    data = client.json("GET", "/api/duplicates", params=params)
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    response = _validate(DuplicatesResponse, data, "GET /api/duplicates")
    out.write(format_duplicates(response) + "\n")
    return 0
