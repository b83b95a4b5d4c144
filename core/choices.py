"""The choices a user makes that cross the app/core boundary, as enums that compare, hash, print and
serialise as their plain values (CLI arguments, saved plans and GGUF metadata stay strings). A light
module: the GUI imports it at startup, without numpy or gguf. The planner, the mix rules and the
quantizer re-export the ones they own (``core.gguf.plan.CalibrationKind``, ``core.gguf.mixes.Policy``,
``core.quant.QuantEngine``).
"""

from __future__ import annotations

import enum
from typing import TypeVar

_C = TypeVar("_C", bound="StrChoice")


class StrChoice(str, enum.Enum):
    """A choice that compares, hashes, prints and serialises as its value (Python 3.11's StrEnum,
    also on 3.10): CLI arguments, saved plans and GGUF metadata stay plain strings."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls: type[_C], value: str, what: str) -> _C:
        """The member for ``value``; InvalidInput naming ``what`` and the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            from quantpress.core.errors import InvalidInput

            raise InvalidInput(f"unknown {what} '{value}'; choose one of "
                               f"{', '.join(m.value for m in cls)}") from None


class CalibrationKind(StrChoice):
    """Where importance weights come from: WEIGHTS (estimated from the model's own weights, no text:
    core/calibration/weights.py; plan_conversion's default), NONE (plain rounding, llama-quantize's
    behaviour without an imatrix), DEFAULT (built-in text), FILE (user text), IMATRIX (a llama.cpp
    imatrix file)."""

    WEIGHTS = "weights"
    NONE = "none"
    DEFAULT = "default"
    FILE = "file"
    IMATRIX = "imatrix"


class Policy(StrChoice):
    """Row-length fallbacks: llama.cpp's table, or quantpress's (IQ4_NL where llama.cpp falls back
    from Q2_K/Q3_K to Q4_0)."""

    QUANTPRESS = "quantpress"
    LLAMA_CPP = "llama.cpp"


class QuantEngine(StrChoice):
    """Which quantizer a conversion asks for: the benchmarked winner per type, or one for all."""

    AUTO = "auto"
    GGML = "ggml"
    NATIVE = "native"
