"""Helpers for the GUI tests (imported as ``app_support``: pytest puts this folder on sys.path)."""

from __future__ import annotations

import importlib
import importlib.util


def core_has(module: str, name: str) -> bool:
    """True when ``module.name`` exists: tests of panes whose core part has not landed are skipped."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False
