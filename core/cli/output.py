"""Shared output helpers for subcommands: ``--json`` is the ``asdict`` of core's data classes."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Turn data classes, enums, paths and tuples into plain JSON values (NaN/Inf become None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    json.dump(to_jsonable(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def format_bytes(n_bytes: float) -> str:
    """Binary units, as memory is reported everywhere else (GiB, MiB)."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"


_progress_open = False


def end_progress_line() -> None:
    """End a drawn progress line with a newline, so what follows (a result, an ``error:``) starts on a
    line of its own; nothing when no progress line is showing."""
    global _progress_open
    if _progress_open:
        sys.stderr.write("\n")
        sys.stderr.flush()
        _progress_open = False


def progress_line(width: int = 40) -> Callable[[Any], None]:
    """A progress reporter that redraws one stderr line: percent, message cut to ``width``, ETA."""

    def report(p: Any) -> None:
        global _progress_open
        eta = f" ETA {p.eta_seconds:.0f}s" if p.eta_seconds is not None else ""
        sys.stderr.write(f"\r{p.fraction * 100:5.1f}% {p.message[:width]:{width}s}{eta}   ")
        sys.stderr.flush()
        _progress_open = True

    return report
