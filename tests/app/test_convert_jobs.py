"""The GUI's conversion job (run in its child process): a refused or failed conversion creates no folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bad_inputs import HF_BREAKAGES
from quantpress.app.convert_jobs import convert_in_child
from quantpress.core.errors import InvalidInput, InvalidModel
from quantpress.core.gguf.plan import CalibrationKind
from quantpress.core.gguf.request import ConversionRequest
from quantpress.core.gguf.source import open_source
from quantpress.core.jobs import CancelToken
from tiny_models import tiny_model

NONE = CalibrationKind.NONE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("smollm", tmp_path_factory.mktemp("tiny"))


def test_failed_conversion_removes_the_folders_it_made(tiny: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny, tmp_path / "model")
    HF_BREAKAGES["nan weights"](folder, tmp_path / "unused-marker")
    with pytest.raises(InvalidModel, match="NaN"):  # found while writing: the folders existed by then
        convert_in_child(open_source(folder), ConversionRequest(("Q8_0",), tmp_path / "a" / "b", NONE),
                         report=lambda p: None, cancel=CancelToken())
    assert not (tmp_path / "a").exists()


def test_refused_output_creates_nothing(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InvalidInput, match="is a file, not a folder"):
        convert_in_child(open_source(tiny), ConversionRequest(("Q8_0",), tmp_path / "a-file" / "sub", NONE),
                         report=lambda p: None, cancel=CancelToken())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
