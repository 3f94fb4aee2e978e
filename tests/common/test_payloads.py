"""The payload contract: what the index stores beside each vector, as the worker writes it
and the API reads it back."""

from __future__ import annotations

import pytest

from imgsearch_common.payloads import (
    PARENT_ID,
    FileRecord,
    ImagePayload,
    WindowPayload,
    merge_records,
)

IMAGE = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def stored(**changes: object) -> dict[str, object]:
    """An image payload as points written before ``stored_path`` existed held it."""
    payload: dict[str, object] = {
        "filename": "cat.jpg",
        "original_path": "/photos/cat.jpg",
        "file_size": 245760,
        "indexed_at": 1764233000.0,
        "width": 1280,
        "height": 853,
        "collection": "default",
        "source": "folder",
    }
    payload.update(changes)
    return payload


def test_old_points_read_back_and_fall_back_to_the_original_path() -> None:
    payload = ImagePayload.read(stored())
    assert payload is not None
    assert payload.file_path == "/photos/cat.jpg"
    assert payload.size == (1280, 853)
    moved = ImagePayload.read(stored(stored_path="/data/uploads/ab/ab12.jpg"))
    assert moved is not None and moved.file_path == "/data/uploads/ab/ab12.jpg"


@pytest.mark.parametrize(
    "payload", [None, {}, {"filename": "x"}, stored(width="wide"), {PARENT_ID: IMAGE}]
)
def test_what_is_not_an_image_payload_reads_as_none(payload: dict[str, object] | None) -> None:
    assert ImagePayload.read(payload) is None


def test_a_size_that_is_not_one_is_unknown() -> None:
    payload = ImagePayload.read(stored(width=0))
    assert payload is not None and payload.size is None


def test_results_show_the_public_metadata_only() -> None:
    payload = ImagePayload.read(stored(stored_path="/srv/uploads/x.jpg", sha256="ab", windows=14))
    assert payload is not None
    shown = payload.metadata().model_dump()
    # No stored_path, sha256 or window count in a search result; its one path.
    assert shown == {**stored(), "paths": ["/photos/cat.jpg"]}


def test_window_payloads() -> None:
    window = WindowPayload.read({PARENT_ID: IMAGE, "box": [0, 10, 224, 234]})
    assert window is not None and window.box == (0, 10, 224, 234)
    for bad in ({PARENT_ID: IMAGE}, {"box": [0, 0, 1, 1]}, {PARENT_ID: "", "box": [0, 0, 1, 1]}):
        assert WindowPayload.read(bad) is None
    assert WindowPayload.read({PARENT_ID: IMAGE, "box": [0, 0, 1]}) is None


def test_points_from_before_the_name_are_served_under_their_file_name() -> None:
    old = ImagePayload.read(stored())
    named = ImagePayload.read(stored(name="2024/summer/cat.jpg"))
    assert old is not None and (old.name, old.indexed_name) == (None, "cat.jpg")
    assert named is not None and named.indexed_name == "2024/summer/cat.jpg"
    assert "name" not in named.metadata().model_dump()  # server-side, like stored_path


def test_one_image_several_files() -> None:
    """The seed's fields are the first file record's; ``paths`` (stored) and the public
    ``metadata().paths`` (original) list every file."""
    old = ImagePayload.read(stored(stored_path="/photos/cat.jpg", sha256="ab"))
    assert old is not None and old.files is None and old.paths == []
    [first] = old.file_records()
    assert first == FileRecord(
        stored_path="/photos/cat.jpg",
        original_path="/photos/cat.jpg",
        name="cat.jpg",
        source="folder",
        size=245760,
        mtime_ns=None,
    )
    copy = FileRecord(
        stored_path="/photos/2024/copy.jpg",
        original_path="/photos/2024/copy.jpg",
        name="2024/copy.jpg",
        size=245760,
        mtime_ns=5,
    )
    two = old.with_files(merge_records(old.file_records(), [copy]))
    assert two.paths == ["/photos/cat.jpg", "/photos/2024/copy.jpg"]
    assert two.metadata().paths == ["/photos/cat.jpg", "/photos/2024/copy.jpg"]
    assert (two.original_path, two.filename, two.indexed_name) == (
        "/photos/cat.jpg",
        "cat.jpg",
        "cat.jpg",
    )
    # The same stored path again replaces its record where it stood.
    touched = first.model_copy(update={"mtime_ns": 9})
    again = two.with_files(merge_records(two.file_records(), [touched]))
    assert again.file_records() == [touched, copy]
    # The first file gone: the seed's fields follow the next one.
    moved = two.with_files([copy])
    assert (moved.original_path, moved.stored_path, moved.filename, moved.name) == (
        "/photos/2024/copy.jpg",
        "/photos/2024/copy.jpg",
        "copy.jpg",
        "2024/copy.jpg",
    )
    assert moved.metadata().original_path == moved.metadata().paths[0]
    with pytest.raises(ValueError, match="at least one"):
        two.with_files([])
