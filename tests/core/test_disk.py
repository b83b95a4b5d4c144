from pathlib import Path

import pytest
from quantpress.core.disk import existing_parent, require_free_space
from quantpress.core.errors import NotEnoughDiskSpace


def test_missing_folder_is_measured_on_its_nearest_existing_parent(tmp_path: Path) -> None:
    asked: list[Path] = []

    def free(p: Path) -> int:
        asked.append(p)
        return 1 << 40

    require_free_space(tmp_path / "a" / "b", 10, what="x", advice="y", disk_free=free)
    assert asked == [tmp_path]
    assert existing_parent(tmp_path / "a" / "b") == tmp_path


def test_too_little_space_names_the_folder_the_need_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotEnoughDiskSpace) as info:
        require_free_space(tmp_path, 300 << 20, what="the output", advice="Choose another folder.",
                           disk_free=lambda _: 100 << 20, margin=0)
    assert str(info.value) == f"{tmp_path}: the output needs 300 MiB but only 100 MiB are free. Choose another folder."


def test_the_margin_counts(tmp_path: Path) -> None:
    require_free_space(tmp_path, 100, what="x", advice="y", disk_free=lambda _: 100, margin=0)
    with pytest.raises(NotEnoughDiskSpace):
        require_free_space(tmp_path, 100, what="x", advice="y", disk_free=lambda _: 100, margin=1)
