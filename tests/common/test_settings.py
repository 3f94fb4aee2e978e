"""Settings that were renamed keep accepting their old spelling."""

from __future__ import annotations

import pytest

from imgsearch_api.settings import ApiSettings
from imgsearch_common.settings import CommonSettings
from imgsearch_common.windows import WindowLayout


@pytest.mark.parametrize("spelling", ["baseline", "seed", "SEED"])
def test_the_baseline_geometry_keeps_its_old_name(
    spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINDOW_GEOMETRY", spelling)
    assert CommonSettings().window_geometry == "baseline"


@pytest.mark.parametrize("spelling", ["baseline", "seed"])
def test_the_baseline_rule_keeps_its_old_name(
    spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTIAL_RULE", spelling)
    assert ApiSettings().partial_rule == "baseline"


def test_unknown_names_are_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTIAL_RULE", "mean")
    with pytest.raises(ValueError, match="partial_rule"):
        ApiSettings()


def test_the_window_layout_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDOW_SCALES", "0.6,0.3")
    monkeypatch.setenv("WINDOW_OVERLAP", "0.25")
    monkeypatch.setenv("MAX_WINDOWS", "9")
    layout = CommonSettings().window_layout()
    assert layout == WindowLayout("relative", (0.6, 0.3), 0.25, 9)
    assert len(layout.boxes(1000, 800)) <= 9
