"""What the user asked a GGUF conversion for: the one object the CLI (argparse, core/cli/cmd_convert.py)
and the GUI (the Convert pane) both build, so the two ask the planner the same question.

    request = ConversionRequest(("Q4_K_M", "Q8_0"), calibration=CalibrationKind.NONE)
    plan = request.plan(open_model("demo"))       # -> core.gguf.plan.plan_conversion
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantpress.core.errors import InvalidInput
from quantpress.core.gguf.mixes import Policy
from quantpress.core.gguf.plan import CalibrationKind, ConversionPlan, Overrides, plan_conversion
from quantpress.core.model import ModelInfo
from quantpress.core.quant import QuantEngine

# What each calibration kind needs besides its name (the GUI's wording of what to pick).
_NEEDS_FILE = {CalibrationKind.FILE: "the calibration text file", CalibrationKind.IMATRIX: "the imatrix file"}


@dataclass(frozen=True)
class ConversionRequest:
    """Formats, where to write (None: ``default_output_dir`` of the model), where importance comes
    from (a kind, plus a file for FILE and IMATRIX), per-tensor overrides, the fallback policy, the
    quantizer, the thread count (0 = all cores) and the vision projector's type."""

    formats: tuple[str, ...]
    out: Path | None = None
    calibration: CalibrationKind = CalibrationKind.WEIGHTS
    calibration_path: str | Path | None = None
    overrides: Overrides = Overrides()
    policy: Policy = Policy.QUANTPRESS
    engine: QuantEngine = QuantEngine.AUTO
    threads: int = 0
    mmproj: str = "F16"  # the vision projector's type for a multimodal wrapper (F16, Q8_0), or "none"

    def __post_init__(self) -> None:  # argparse and older callers pass plain strings
        object.__setattr__(self, "formats", tuple(f.upper() for f in self.formats))
        object.__setattr__(self, "calibration", CalibrationKind.parse(self.calibration, "calibration"))
        object.__setattr__(self, "policy", Policy.parse(self.policy, "policy"))
        object.__setattr__(self, "engine", QuantEngine.parse(self.engine, "quantization engine"))

    def plan(self, model: ModelInfo) -> ConversionPlan:
        """The plan for ``model`` (pure: config, tokenizer and headers only); InvalidInput for a
        calibration kind that needs a file when none was chosen."""
        return plan_conversion(model, self.formats, self.out, **self.importance(), overrides=self.overrides,
                               policy=self.policy, threads=self.threads, engine=self.engine, mmproj=self.mmproj)

    def importance(self) -> dict[str, str | Path | None]:
        """The planners' ``imatrix`` and ``calibration`` arguments for this request (plan_conversion's, and
        core.gguf.best_fit's); InvalidInput for a kind that needs a file when none was chosen."""
        what = _NEEDS_FILE.get(self.calibration)
        if what and self.calibration_path is None:
            raise InvalidInput(f"Choose {what} (or pick another calibration).")
        imatrix = self.calibration_path if self.calibration == CalibrationKind.IMATRIX else None
        text = self.calibration_path if self.calibration == CalibrationKind.FILE else None
        return {"imatrix": imatrix, "calibration": None if imatrix else (text or self.calibration.value)}
