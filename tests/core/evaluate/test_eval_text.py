"""The shipped held-out text: present, long enough for the default evaluation, not the calibration text."""

from __future__ import annotations

from importlib.resources import files

from quantpress.core.evaluate import default_eval_text


def _shingles(text: str, n: int = 8) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n)}


def test_held_out_text_is_long_and_documented() -> None:
    text = default_eval_text().text
    assert len(text.split()) > 5000  # ~7 300 SmolLM2 tokens: more than the default 4 096
    readme = files("quantpress.resources").joinpath("eval", "README.md").read_text(encoding="utf-8")
    assert "Licence" in readme and "Origin" in readme


def test_held_out_text_shares_no_passage_with_the_calibration_text() -> None:
    calibration = files("quantpress.resources").joinpath("calibration", "default.txt")
    if not calibration.is_file():  # the calibration helper's resource; nothing to compare yet
        return
    shared = _shingles(default_eval_text().text) & _shingles(calibration.read_text(encoding="utf-8"))
    assert not shared, sorted(shared)[:5]
