"""The Fit pane's "Best quality that fits" in the Convert queue: a job that chooses every tensor's type
for the chosen context and memory (core/gguf/best_fit.py), whose plan the Convert pane shows, then a
job that writes exactly that plan. Both run in a child process (they read and quantize the weights:
app/isolated.py says why that never runs in the GUI process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantpress.app.isolated import run_isolated

if TYPE_CHECKING:  # the planner imports numpy and gguf: only inside the jobs
    from quantpress.core.gguf.request import ConversionRequest


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


def plan_in_child(request: BestFitRequest, conversion: ConversionRequest, *, report: Any, cancel: Any) -> Any:
    """Choose the types (core.gguf.best_fit.plan_best_fit) with the Convert pane's importance source,
    threads and folder (``conversion``): the plan, nothing written. Runs in a child process."""
    from quantpress.core.gguf.best_fit import plan_best_fit
    from quantpress.core.gguf.targets import Target
    from quantpress.core.jobs import Throttle

    target = Target.fit(request.device, ctx_tokens=request.ctx_tokens, kv_type=request.kv_type)
    importance = conversion.importance()
    return plan_best_fit(request.model, target, conversion.out, hardware=request.hardware, report=Throttle(report),
                         cancel=cancel, threads=conversion.threads, imatrix=importance["imatrix"],
                         calibration=importance["calibration"])


def convert_plan_in_child(plan: Any, *, report: Any, cancel: Any) -> Any:
    """Write exactly ``plan`` (the one the user was shown). Runs in a child process."""
    from quantpress.core.gguf.convert import check_outputs, convert
    from quantpress.core.outputs import output_folder

    check_outputs(plan)  # before the folder exists: a refused job creates nothing
    with output_folder(Path(plan.outputs[0].path).parent):  # a failed or cancelled job leaves nothing
        return convert(plan, report=report, cancel=cancel)


def plan_job(request: BestFitRequest, conversion: ConversionRequest) -> Callable[..., Any]:
    """A Convert-queue job returning the plan for ``request``."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_isolated(plan_in_child, request, conversion, report=report, cancel=cancel)

    return job


def convert_plan_job(plan: Any) -> Callable[..., Any]:
    """A Convert-queue job writing ``plan``."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_isolated(convert_plan_in_child, plan, report=report, cancel=cancel)

    return job
