"""Output checks that the bad-input suite cannot reach on this machine: tests run as root, for whom
every folder is writable, so the refusal of an unwritable place is shown with os.access answering
as it does for an ordinary user (or on a read-only filesystem)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from quantpress.core.errors import InvalidInput
from quantpress.core.outputs import check_output_file, check_output_folder, make_folder, output_folder


@pytest.fixture
def unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path/locked``: a folder os.access reports as not writable."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    return locked


def test_unwritable_place_is_refused_before_anything_is_made(unwritable: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot write there: .*locked' is not writable"):
        check_output_file(unwritable / "new" / "m.gguf")
    with pytest.raises(InvalidInput, match="is not writable"):
        check_output_folder(unwritable / "awq")
    assert list(unwritable.iterdir()) == []


def test_a_failed_job_removes_only_the_folders_it_made(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "a" / "b" / "c"):
        assert (tmp_path / "a" / "b" / "c").is_dir()
        raise RuntimeError("the job failed")
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and list((tmp_path / "a").iterdir()) == []
    assert make_folder(tmp_path / "a" / "d") == [tmp_path / "a" / "d"]
