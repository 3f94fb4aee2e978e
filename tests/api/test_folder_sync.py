"""The queue-time classification of a folder's files (``imgsearch_api.folder_sync``), exactly."""

from __future__ import annotations

from imgsearch_api.folder_sync import (
    FolderPlan,
    ListedFile,
    Move,
    Recorded,
    classify,
    in_scope,
    match_moves,
    move_candidates,
    recorded_files,
)
from imgsearch_common.payloads import FileRecord, ImagePayload

ROOT = "/photos"
EXT = (".jpg", ".png")


def listed(name: str, size: int = 100, mtime_ns: int = 7) -> ListedFile:
    return ListedFile(f"{ROOT}/{name}", name, size, mtime_ns)


def record(name: str, size: int = 100, mtime_ns: int | None = 7) -> FileRecord:
    return FileRecord(
        stored_path=f"{ROOT}/{name}",
        original_path=f"{ROOT}/{name}",
        name=name,
        size=size,
        mtime_ns=mtime_ns,
    )


def recorded(image: str, *records: FileRecord, sha: str | None = None) -> list[Recorded]:
    return [Recorded(image, sha or f"sha-{image}", r) for r in records]


def index(*entries: list[Recorded]) -> dict[str, list[Recorded]]:
    out: dict[str, list[Recorded]] = {}
    for entry in entries:
        for r in entry:
            out.setdefault(r.record.stored_path, []).append(r)
    return out


def test_unchanged_changed_and_new() -> None:
    files = [
        listed("same.jpg"),
        listed("bigger.jpg", size=101),
        listed("touched.jpg", mtime_ns=8),
        listed("fresh.jpg"),
        listed("legacy.jpg"),
    ]
    known = index(
        recorded("a", record("same.jpg")),
        recorded("b", record("bigger.jpg")),
        recorded("c", record("touched.jpg")),
        recorded("d", record("legacy.jpg", mtime_ns=None)),  # no time recorded: re-read
    )
    plan = classify(files, known, ROOT, recursive=True, extensions=EXT, sync=False)
    assert [f.name for f in plan.unchanged] == ["same.jpg"]
    assert [f.name for f in plan.changed] == ["bigger.jpg", "touched.jpg", "legacy.jpg"]
    assert [f.name for f in plan.new] == ["fresh.jpg"]
    assert plan.gone == []
    assert [f.name for f in plan.queued] == ["fresh.jpg", "bigger.jpg", "touched.jpg", "legacy.jpg"]
    assert [r.image_id for r in plan.legacy] == []  # "d" is not legacy: it has a record


def test_points_from_before_file_records_are_named_when_touched() -> None:
    def old(image: str, name: str) -> list[Recorded]:
        return [Recorded(image, f"sha-{image}", record(name, mtime_ns=None), legacy=True)]

    known = index(old("a", "listed.jpg"), old("b", "deleted.jpg"))
    plan = classify([listed("listed.jpg")], known, ROOT, recursive=True, extensions=EXT, sync=False)
    assert [r.image_id for r in plan.legacy] == ["a"]
    plan = classify([listed("listed.jpg")], known, ROOT, recursive=True, extensions=EXT, sync=True)
    assert [r.image_id for r in plan.legacy] == ["a", "b"]


def test_a_path_recorded_in_two_images_is_queued_again() -> None:
    # A stale state (two writers raced): queuing the file again repairs it.
    known = index(recorded("a", record("x.jpg")), recorded("b", record("x.jpg")))
    plan = classify([listed("x.jpg")], known, ROOT, recursive=True, extensions=EXT, sync=False)
    assert [f.name for f in plan.changed] == ["x.jpg"]


def test_without_sync_nothing_is_gone() -> None:
    known = index(recorded("a", record("deleted.jpg")))
    plan = classify([], known, ROOT, recursive=True, extensions=EXT, sync=False)
    assert plan == FolderPlan()


def test_only_what_the_listing_could_list_is_gone() -> None:
    known = index(
        recorded("a", record("deleted.jpg")),
        recorded("b", record("sub/deleted.jpg")),
        recorded("c", record("kept.gif")),  # another extension: not listed, not gone
        recorded(
            "d",
            FileRecord(
                stored_path="/photos2/x.jpg", original_path="/photos2/x.jpg", name="x.jpg", size=1
            ),
        ),
        recorded("e", record("UPPER.JPG")),
    )
    flat = classify([], known, ROOT, recursive=False, extensions=EXT, sync=True)
    assert [g.image_id for g in flat.gone] == ["e", "a"]  # sorted by path: "U" < "d"
    deep = classify([], known, ROOT, recursive=True, extensions=EXT, sync=True)
    assert [g.image_id for g in deep.gone] == ["e", "a", "b"]


def test_in_scope() -> None:
    assert in_scope("/photos/a.jpg", "/photos", recursive=False, extensions=EXT)
    assert not in_scope("/photos/s/a.jpg", "/photos", recursive=False, extensions=EXT)
    assert in_scope("/photos/s/a.jpg", "/photos", recursive=True, extensions=EXT)
    assert not in_scope("/photos-old/a.jpg", "/photos", recursive=True, extensions=EXT)
    assert not in_scope("/photos/a.webp", "/photos", recursive=True, extensions=EXT)
    assert in_scope("/a.jpg", "/", recursive=False, extensions=EXT)
    assert in_scope("/x/a.jpg", "/", recursive=True, extensions=EXT)


def test_moves_pair_each_gone_file_with_one_new_file_of_its_content() -> None:
    known = index(
        recorded("a", record("old/a.jpg", size=10), sha="A"),
        recorded("b", record("old/b1.jpg", size=20), record("old/b2.jpg", size=20), sha="B"),
        recorded("c", record("old/c.jpg", size=30), sha="C"),  # deleted, not moved
    )
    files = [
        listed("new/a.jpg", size=10),
        listed("new/b1.jpg", size=20),
        listed("new/b2.jpg", size=20),
        listed("new/other.jpg", size=10),  # same size as a, other content
        listed("new/big.jpg", size=99),  # no gone file of its size: never hashed
    ]
    plan = classify(files, known, ROOT, recursive=True, extensions=EXT, sync=True)
    assert [g.record.name for g in plan.gone] == ["old/a.jpg", "old/b1.jpg", "old/b2.jpg",
                                                  "old/c.jpg"]  # fmt: skip
    candidates = move_candidates(plan)
    assert [f.name for f in candidates] == ["new/a.jpg", "new/b1.jpg", "new/b2.jpg",
                                            "new/other.jpg"]  # fmt: skip
    hashes = {"/photos/new/a.jpg": "A", "/photos/new/b1.jpg": "B", "/photos/new/b2.jpg": "B",
              "/photos/new/other.jpg": "Z"}  # fmt: skip
    moves = match_moves(plan, hashes)
    assert [(m.gone.record.name, m.to.name) for m in moves] == [
        ("old/a.jpg", "new/a.jpg"),
        ("old/b1.jpg", "new/b1.jpg"),
        ("old/b2.jpg", "new/b2.jpg"),
    ]
    assert moves[0] == Move(plan.gone[0], files[0])


def test_a_gone_image_without_a_content_hash_cannot_move() -> None:
    gone = [Recorded("a", None, record("old.jpg", size=10))]
    plan = FolderPlan(new=[listed("new.jpg", size=10)], gone=gone)
    assert move_candidates(plan) == []
    assert match_moves(plan, {"/photos/new.jpg": ""}) == []


def test_recorded_files_of_payloads_old_and_new() -> None:
    base = {"file_size": 5, "indexed_at": 0.0, "width": 1, "height": 1, "collection": "c"}
    old = ImagePayload.model_validate(
        {**base, "filename": "o.jpg", "original_path": "/photos/o.jpg", "sha256": "O"}
    )
    upload = ImagePayload.model_validate(
        {
            **base,
            "filename": "u.png",
            "original_path": "u.png",
            "source": "upload",
            "stored_path": "/data/uploads/ab/ab.png",
        }
    )
    two = ImagePayload.model_validate(
        {**base, "filename": "x", "original_path": "x", "sha256": "T"}
    ).with_files([record("t1.jpg"), record("t2.jpg")])
    found = recorded_files([("o", old), ("u", upload), ("t", two)])
    assert sorted(found) == ["/photos/o.jpg", "/photos/t1.jpg", "/photos/t2.jpg"]
    [legacy] = found["/photos/o.jpg"]
    assert legacy.legacy and legacy.sha256 == "O" and legacy.record.mtime_ns is None
    assert legacy.record.size == 5 and legacy.record.name == "o.jpg"
    [t2] = found["/photos/t2.jpg"]
    assert (t2.image_id, t2.sha256, t2.legacy) == ("t", "T", False)
