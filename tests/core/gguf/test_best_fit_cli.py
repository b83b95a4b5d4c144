"""`quantpress convert MODEL --target-size | --target-bpw | --fit` (core/cli/convert_target.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.cli import main


@pytest.fixture(scope="module")
def model(tiny: Callable[[str], Path]) -> Path:
    return tiny("llama")


@pytest.mark.slow
def test_fit_ram_json_writes_the_planned_file(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", str(model), "--fit", "ram", "--context", "256", "--kv-type", "q8_0", "--memory", "1GiB",
                 "--out", str(tmp_path), "--json"])
    assert code == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert result["format"] == "MIXED" and Path(result["output"]).stat().st_size == result["file_bytes"]
    target = json.loads(Path(result["output"] + ".json").read_text())["plan"]["target"]
    assert (target["kind"], target["ctx_tokens"], target["kv_type"]) == ("fit-ram", 256, "q8_0")
    assert target["memory_bytes"] <= target["budget_bytes"] == 1024**3


def test_target_size_dry_run_shows_the_plan(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(model), "--target-size", "600KB", "--out", str(tmp_path), "--dry-run", "--json"]) == 0
    (plan,) = json.loads(capsys.readouterr().out)
    assert plan["file_bytes"] <= 600_000 and plan["target"]["kind"] == "size"
    assert plan["target"]["sensitivity"] == "runtime"  # the default: measured through llama.cpp, no torch
    assert len(set(plan["tensor_types"].values())) >= 2
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing (the probe's F16 copy is temporary)
    assert main(["convert", str(model), "--target-size", "600KB", "--sensitivity", "weights", "--out", str(tmp_path),
                 "--dry-run", "--json"]) == 0
    (plan,) = json.loads(capsys.readouterr().out)
    assert plan["target"]["sensitivity"] == "weights" and plan["file_bytes"] <= 600_000


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "Q4_K_M", "--target-bpw", "4.5"], "either --format or a target"),
    (["--memory", "2GB"], "only apply with --fit"),
    (["-f", "Q4_K_M", "--sensitivity", "fisher"], "--sensitivity only applies with a target"),
    (["-f", "Q4_K_M", "--remeasure"], "--remeasure only applies with a target"),
    (["--target-size", "4.5 parsecs"], "is not a size"),
    (["--target-bpw", "0.5"], "out of range"),
    (["--target-size", "1KB", "--tensor-type", "ffn=Q8_0"], "chooses every tensor's type itself"),
    (["--target-size", "10KB"], "too small for this model"),
    ([], "choose an output"),
])
def test_bad_targets_are_clear_errors(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], message: str) -> None:
    assert main(["convert", str(model), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
