"""The tested dependency set (constraints.txt) and the warnings policy of the suite itself."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from refresh_constraints import pinned_lines  # noqa: E402


def test_constraints_pin_every_runtime_dependency_but_torch() -> None:
    lines = [ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    names = {re.split(r"==", ln)[0].lower().replace("_", "-") for ln in lines}
    for dep in ("transformers", "huggingface-hub", "numpy", "gguf", "llama-cpp-python", "pyside6-essentials",
                "safetensors", "tokenizers", "pytest", "compressed-tensors", "nvidia-ml-py"):
        assert dep in names
    assert "torch" not in names and "quantpress" not in names  # setup.sh chooses torch's build
    python = re.search(r"^# python: (\d+\.\d+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert python is not None
    assert all(ln.endswith(f'; python_version == "{python.group(1)}"') and "==" in ln for ln in lines)


def test_installed_versions_are_the_tested_ones() -> None:
    """An environment setup.sh made with the constraints holds exactly the pinned versions."""
    marker = Path(sys.prefix) / "quantpress-constraints"
    if not marker.is_file() or marker.read_text().strip() != "on":
        pytest.skip("this environment was not made by setup.sh with QUANTPRESS_CONSTRAINTS=on")
    text = (ROOT / "constraints.txt").read_text()
    if re.search(r"^# python: (\S+)$", text, re.M).group(1) != "{}.{}".format(*sys.version_info[:2]):  # type: ignore[union-attr]
        pytest.skip("constraints.txt was recorded on another Python; setup resolved the newest releases")
    from importlib.metadata import PackageNotFoundError, version

    off = []
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            name, pinned = ln.split(";")[0].split("==")
            try:
                if version(name) != pinned:
                    off.append(f"{name} {version(name)} (tested {pinned})")
            except PackageNotFoundError:
                off.append(f"{name} missing")
    assert not off


def test_pinned_lines_drop_torch_tools_and_editables() -> None:
    freeze = "\n".join(["-e git+file:///x#egg=quantpress", "torch==2.13.0+cpu", "nvidia-cublas-cu12==1",
                        "pip==25.0", "numpy==2.4.6", "PySide6_Essentials==6.11.3", "nvidia-ml-py==13.1",
                        "triton==3.1", "# comment"])
    assert pinned_lines(freeze, "3.11") == ['numpy==2.4.6; python_version == "3.11"',
                                            'nvidia-ml-py==13.1; python_version == "3.11"',
                                            'PySide6_Essentials==6.11.3; python_version == "3.11"']


def test_third_party_deprecations_are_shown_not_fatal() -> None:
    with warnings.catch_warnings(record=True) as seen:
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.warn_explicit("old API", category, "lib.py", 1, module="somelib.sub")
    assert len(seen) == 3


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, FutureWarning])
def test_warnings_from_quantpress_code_stay_errors(category: type[Warning]) -> None:
    with pytest.raises(category):
        warnings.warn_explicit("ours", category, "x.py", 1, module="quantpress.core.jobs")


def test_other_third_party_warnings_stay_errors() -> None:
    with pytest.raises(UserWarning):
        warnings.warn_explicit("odd", UserWarning, "lib.py", 1, module="somelib")


def test_refresh_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "c.txt"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "refresh_constraints.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert "# python: " in out.read_text() and "numpy==" in out.read_text()
