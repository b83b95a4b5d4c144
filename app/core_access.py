"""Lazy access to core functions that may not exist yet (or whose heavy imports must wait).

Panes ask ``core_function("quantpress.core.estimate", "estimate")`` when they need it; a missing
module or name yields ``None`` plus a reason, and the pane shows a clear "not available" state
instead of inventing a result.
"""

from __future__ import annotations

import importlib
from typing import Any


class Missing:
    """Why a core function is unavailable (truthy-false so ``if fn:`` reads naturally)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.what} is not available in this build yet ({self.reason})."


def core_function(module: str, name: str) -> Any:
    """The object ``module.name`` or a :class:`Missing` explaining why it cannot be used."""
    what = f"{module.rsplit('.', 1)[-1]}.{name}"
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return Missing(what, f"cannot import {module}: {exc}")
    obj = getattr(mod, name, None)
    if obj is None:
        return Missing(what, f"{module} has no {name}")
    return obj


def available(module: str, name: str) -> bool:
    return bool(core_function(module, name))


def module_exists(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (cheap enough for the GUI thread)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
