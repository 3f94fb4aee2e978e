"""The rule of which changes on disk re-queue a followed folder (``watching.relevant_change``)."""

from __future__ import annotations

from pathlib import Path

from imgsearch_common.imaging import DEFAULT_EXTENSIONS
from imgsearch_common.watching import relevant_change


def test_photos_folders_and_deletions_count_other_files_do_not(tmp_path: Path) -> None:
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "2024.summer").mkdir()
    (tmp_path / ".a.jpg.tmp").write_bytes(b"x")
    ext = DEFAULT_EXTENSIONS
    assert relevant_change(str(tmp_path / "a.JPG"), ext)
    assert relevant_change(str(tmp_path / "gone.jpg"), ext)  # deleted
    assert relevant_change(str(tmp_path / "2024.summer"), ext)  # a folder, dot or not
    assert relevant_change(str(tmp_path / "moved-away"), ext)  # gone: it may have held photos
    assert not relevant_change(str(tmp_path / "notes.txt"), ext)
    assert not relevant_change(str(tmp_path / ".a.jpg.tmp"), ext)
    assert not relevant_change(str(tmp_path / ".hidden.jpg"), ext)
    assert not relevant_change(str(tmp_path / "a.JPG"), (".png",))
