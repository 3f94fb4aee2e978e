"""``imgsearch collections``, ``delete``, ``drop`` and ``search --collections``: the exact
output of their formatters and arguments, and the commands against the real search API of
the in-process stack (its points forged through the internal hand-off: no model call is
spent on indexing)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imgsearch_cli import (
    ApiClient,
    CliError,
    CliSettings,
    cmd_collections,
    cmd_delete,
    cmd_drop,
    cmd_search,
    format_collections,
    format_model,
    format_table,
    parse_args,
)
from imgsearch_common.schemas import CollectionSummary, SearchResult
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

SETTINGS = CliSettings(imgsearch_api="http://search.local:8000", api_key=None)
A, B = "cli-lib-a", "cli-lib-b"


def _id(n: int) -> str:
    return f"66666666-0000-0000-0000-{n:012x}"


def _parse(*argv: str) -> Any:
    return parse_args(list(argv), SETTINGS)


# --- arguments and formatting -----------------------------------------------------------------


def test_search_collections_are_split_deduplicated_and_repeatable() -> None:
    args = _parse("search", "--text", "x", "--collections", "a,b", "--collections", " c ,a,")
    assert args.collections == ["a", "b", "c"]
    assert _parse("search", "--text", "x").collections is None


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--text", "x", "--collections", ","],
        ["delete"],
        ["drop"],
    ],
)
def test_library_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2


def test_delete_and_drop_arguments() -> None:
    args = _parse("delete", _id(1), "--collection", "cats")
    assert (args.command, args.image_id, args.collection) == ("delete", _id(1), "cats")
    assert _parse("delete", _id(1)).collection == "default"
    assert (_parse("drop", "cats").yes, _parse("drop", "cats", "--yes").yes) == (False, True)


def test_format_collections_exact() -> None:
    model = {"model": "ViT-B-32", "pretrained": "random", "image_size": 224, "dim": 512}
    rows = [
        CollectionSummary(name="cats", images=34, windows=789, model=model),
        CollectionSummary(name="default\x1b", images=1200, windows=56000, model=None),
    ]
    assert format_collections(rows) == (
        "collection  images  regions  model\n"
        "cats            34      789  ViT-B-32/random\n"
        "default?      1200    56000  -"
    )
    assert format_collections([]) == "no collections"
    assert format_model({"model": "RN50", "pretrained": ""}) == "RN50"


def test_format_table_with_the_collection() -> None:
    def result(n: int, collection: str, score: float) -> SearchResult:
        return SearchResult(
            id=_id(n),
            score=score,
            metadata=None,
            matched_regions=0,
            avg_score=None,
            match_type="full",
            image_url=f"/api/image/{_id(n)}?collection={collection}",
            collection=collection,
        )

    results = [result(1, "cats", 0.9), result(1, "dogs\n", 0.8)]
    assert format_table(results, with_collection=True) == (
        "#   score  match  regions  path                                  collection  best box\n"
        f"1  0.9000  full         0  {_id(1)}  cats        -\n"
        f"2  0.8000  full         0  {_id(1)}  dogs?       -"
    )


# --- the commands, against the real API ------------------------------------------------------


@pytest.fixture
def client(inprocess: InProcessStack) -> Iterator[ApiClient]:
    """An ``ApiClient`` of the in-process API, with ``lib-a`` (images 1, 2) and ``lib-b``
    (image 3) forged in; both dropped afterwards."""
    transport = LoopTransport(inprocess.api_app, inprocess.loop)
    with httpx.Client(transport=transport) as raw:
        for collection, numbers in ((A, (1, 2)), (B, (3,))):
            full = [image_point(_id(n), f"/nowhere/{n}.png", collection, seed=n) for n in numbers]
            body = {"collection": collection, "full": full, "windows": []}
            assert raw.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
    with ApiClient(API_URL, transport=transport) as api:
        yield api
        for name in (A, B):
            if name in {c.name for c in api.collections().collections}:
                api.drop_collection(name)


def _run(command: Any, client: ApiClient, *argv: str, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = command(client, _parse(*argv), out, err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_collections_lists_them(client: ApiClient) -> None:
    code, out, _ = _run(cmd_collections, client, "collections")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["collection", "images", "regions", "model"]
    # Other tests' collections may be listed too.
    assert [A, "2", "0", "-"] in rows and [B, "1", "0", "-"] in rows


def test_search_several_collections(client: ApiClient) -> None:
    code, out, _ = _run(
        cmd_search, client, "search", "--text", "x", "--collections", f"{A},{B}", "--json"
    )
    assert code == 0
    results = json.loads(out)["results"]
    assert {(r["id"], r["collection"]) for r in results} == {(_id(1), A), (_id(2), A), (_id(3), B)}
    code, out, _ = _run(cmd_search, client, "search", "--text", "x", "--collections", f"{A},{B}")
    assert code == 0
    assert out.splitlines()[0].split()[5] == "collection"
    # The server's message alone: it names the collections that exist.
    with pytest.raises(CliError, match=f"^no collection 'nope'; the collections are: .*'{A}'"):
        _run(cmd_search, client, "search", "--text", "x", "--collections", f"{A},nope")


def test_delete_removes_the_image_once(client: ApiClient) -> None:
    code, out, _ = _run(cmd_delete, client, "delete", _id(2), "--collection", A)
    assert (code, out) == (0, f"deleted image {_id(2)} from {A}\n")
    assert {c.name: c.images for c in client.collections().collections}[A] == 1
    with pytest.raises(CliError, match="not_found: no such image"):
        _run(cmd_delete, client, "delete", _id(2), "--collection", A)
    # An id that is a path is one path segment: no other route is reached.
    with pytest.raises(CliError, match=r"http_404|not_found"):
        _run(cmd_delete, client, "delete", f"../../collections/{A}", "--collection", A)
    assert {c.name: c.images for c in client.collections().collections}[A] == 1


def test_drop_asks_first(client: ApiClient) -> None:
    for answer in ("n\n", "", "maybe\n"):
        code, out, err = _run(cmd_drop, client, "drop", A, stdin=io.StringIO(answer))
        assert (code, out) == (1, ""), answer
        assert f"drop collection '{A}': 2 images, 0 regions?" in err
        assert err.endswith("not dropped\n")
    assert A in {c.name for c in client.collections().collections}
    code, out, _ = _run(cmd_drop, client, "drop", A, stdin=io.StringIO("Yes\n"))
    assert (code, out) == (0, f"dropped collection {A}: 2 images, 0 regions\n")
    assert A not in {c.name for c in client.collections().collections}
    code, out, err = _run(cmd_drop, client, "drop", B, "--yes", stdin=io.StringIO(""))
    assert (code, out, err) == (0, f"dropped collection {B}: 1 image, 0 regions\n", "")
    # Asked first or not, the same words: the API's (drop --yes asks nothing first).
    for argv in (("drop", A), ("drop", A, "--yes")):
        with pytest.raises(CliError, match=r"^no collection 'cli-lib-a'; ") as exc:
            _run(cmd_drop, client, *argv, stdin=io.StringIO("y\n"))
        assert exc.value.code == "collection_not_found"
