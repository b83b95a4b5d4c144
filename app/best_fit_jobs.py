"""The Fit pane's "Best quality that fits" in the Convert queue: a job that chooses every tensor's type
for the chosen context and memory (core/gguf/best_fit.py), whose plan the Convert pane shows, then a
job that writes exactly that plan. Both run in a child process (they read and quantize the weights:
app/isolated.py says why that never runs in the GUI process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantpress.app.isolated import run_isolated


@dataclass(frozen=True)
class BestFitRequest:
    """What the Fit pane asks the Convert queue for: the model, where it must fit (``device`` 'gpu' or
    'ram', at ``ctx_tokens`` with a ``kv_type`` cache) on ``hardware`` (detected or what-if)."""

    model: Any
    hardware: Any
    device: str
    ctx_tokens: int
    kv_type: str

    @property
    def title(self) -> str:
        where = "GPU" if self.device == "gpu" else "RAM"
        return f"{getattr(self.model, 'name', '') or 'model'} → choose types for {where} at {self.ctx_tokens:,} tokens"


def plan_in_child(request: BestFitRequest, out_dir: Path, options: dict[str, Any], *, report: Any,
                  cancel: Any) -> Any:
    """Choose the types (core.gguf.best_fit.plan_best_fit): the plan, nothing written. Runs in a child process."""
    from quantpress.app.convert_jobs import _plan_kwargs
    from quantpress.core.gguf.best_fit import plan_best_fit
    from quantpress.core.gguf.targets import Target
    from quantpress.core.jobs import Throttle

    kwargs = {k: v for k, v in _plan_kwargs(options).items() if k in ("calibration", "imatrix", "threads")}
    target = Target.fit(request.device, ctx_tokens=request.ctx_tokens, kv_type=request.kv_type)
    return plan_best_fit(request.model, target, out_dir, hardware=request.hardware, report=Throttle(report),
                         cancel=cancel, **kwargs)


def convert_plan_in_child(plan: Any, *, report: Any, cancel: Any) -> Any:
    """Write exactly ``plan`` (the one the user was shown). Runs in a child process."""
    from quantpress.core.gguf.convert import check_outputs, convert
    from quantpress.core.outputs import output_folder

    check_outputs(plan)  # before the folder exists: a refused job creates nothing
    with output_folder(Path(plan.outputs[0].path).parent):  # a failed or cancelled job leaves nothing
        return convert(plan, report=report, cancel=cancel)


def plan_job(request: BestFitRequest, out_dir: Path, options: dict[str, Any]) -> Callable[..., Any]:
    """A Convert-queue job returning the plan for ``request``."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_isolated(plan_in_child, request, out_dir, options, report=report, cancel=cancel)

    return job


def convert_plan_job(plan: Any) -> Callable[..., Any]:
    """A Convert-queue job writing ``plan``."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_isolated(convert_plan_in_child, plan, report=report, cancel=cancel)

    return job
