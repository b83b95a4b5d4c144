"""The best-fit planner keeps its measurements per model (core/gguf/loss_cache.py): a second plan of the
same model takes them instead of measuring again and comes out exactly as the first; a change to the
model's files, --remeasure, a measurement that fell back, or an unreadable entry all mean measuring."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dead_process import dead_pid
from quantpress.core.gguf import best_fit, loss_cache
from quantpress.core.gguf import runtime_probe as rp
from quantpress.core.gguf.best_fit import plan_best_fit
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.source import open_source
from quantpress.core.gguf.targets import Target


@pytest.fixture()
def model(tiny: Callable[[str], Path], tmp_path: Path) -> Path:
    """A copy of the tiny llama that a test may change."""
    return Path(shutil.copytree(tiny("llama"), tmp_path / "model"))


@pytest.fixture()
def measures(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the planner's measurements."""
    calls: list[int] = []
    real = best_fit._measure

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(best_fit, "_measure", counted)
    return calls


def _entries() -> list[Path]:
    return sorted(loss_cache.cache_folder().glob("*.json"))


def _q4_size(model: Path, tmp_path: Path) -> int:
    return plan_conversion(open_source(model), ["Q4_K_M"], tmp_path).outputs[0].file_bytes


def test_a_second_plan_reuses_the_measurements(model: Path, tmp_path: Path, measures: list[int]) -> None:
    size = _q4_size(model, tmp_path)
    folder = loss_cache.cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f".{'0' * 32}.tmp-{dead_pid()}-1"  # a planner killed before its rename
    stale.write_text("{")
    first = plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert len(measures) == 1 and len(_entries()) == 1
    assert not stale.exists()  # removed by the save
    again = plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert len(measures) == 1  # nothing measured: the kept losses
    assert again.outputs == first.outputs  # the same types, size and metadata, to the byte
    assert again.target is not None and first.target is not None
    assert again.target.expected_kld == first.target.expected_kld
    assert again.target.sensitivity == first.target.sensitivity == "runtime"
    smaller = plan_best_fit(open_source(model), Target.size(int(size * 0.9)), tmp_path)  # another target: the same losses
    assert len(measures) == 1 and smaller.outputs[0].file_bytes <= int(size * 0.9)
    plan_best_fit(open_source(model), Target.size(size), tmp_path, reuse=False)  # --remeasure
    assert len(measures) == 2 and len(_entries()) == 1


def test_a_changed_model_is_measured_again(model: Path, tmp_path: Path, measures: list[int]) -> None:
    size = _q4_size(model, tmp_path)
    plan_best_fit(open_source(model), Target.size(size), tmp_path)
    weights = next(model.glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten (same size, a later mtime)
    plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert len(measures) == 2 and len(_entries()) == 2
    plan_best_fit(open_source(model), Target.size(size), tmp_path, sensitivity="weights")  # another sensitivity
    assert len(measures) == 3


def test_a_fallback_is_not_kept_and_a_bad_entry_is_a_miss(model: Path, tmp_path: Path, measures: list[int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    size = _q4_size(model, tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("unknown model architecture")

    with monkeypatch.context() as m:
        m.setattr(rp._Runner, "__init__", refuse)
        plan = plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert plan.target is not None and plan.target.sensitivity == "weights"
    assert _entries() == []  # the probe may run next time: not kept
    plan = plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert plan.target is not None and plan.target.sensitivity == "runtime" and len(measures) == 2
    (entry,) = _entries()
    kept = json.loads(entry.read_text(encoding="utf-8"))
    name = next(iter(kept["errors"]))
    for bad in ("{not json", json.dumps({**kept, "errors": {name: {**kept["errors"][name], "loss": {"Q4_K": "x"}}}}),
                json.dumps({**kept, "errors": {name: {**kept["errors"][name], "signal": -1.0}}}),
                json.dumps({**kept, "exact": 7})):
        entry.write_text(bad, encoding="utf-8")
        assert loss_cache.load(entry.stem) is None  # a miss, not a crash
    again = plan_best_fit(open_source(model), Target.size(size), tmp_path)
    assert len(measures) == 3 and again.outputs == plan.outputs
    assert loss_cache.load(entry.stem) is not None  # written anew
    assert not list(loss_cache.cache_folder().glob(".*.tmp-*"))


@pytest.mark.parametrize("stage", ["measure", "probe"])
def test_a_cancelled_plan_keeps_nothing(model: Path, tmp_path: Path, stage: str) -> None:
    """Cancelled while the errors are measured (tensors on worker threads) or while the probe runs: the
    plan stops with Cancelled, and neither a loss cache entry nor the probe's copy is left."""
    from quantpress.core.jobs import Cancelled, CancelToken, Progress

    size = _q4_size(model, tmp_path)
    token = CancelToken()
    stages: list[str] = []

    def report(p: Progress) -> None:
        stages.append(p.stage)
        if p.stage == stage:
            token.cancel()

    before = set(Path(rp.tempfile.gettempdir()).glob("quantpress-probe-*"))
    with pytest.raises(Cancelled):
        plan_best_fit(open_source(model), Target.size(size), tmp_path, report=report, cancel=token)
    assert stage in stages and "plan" not in stages
    assert _entries() == [] and not list(loss_cache.cache_folder().glob(".*.tmp-*"))
    assert set(Path(rp.tempfile.gettempdir()).glob("quantpress-probe-*")) <= before
