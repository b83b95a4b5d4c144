"""The model's sidecar JSON (``<model file name>.json`` next to the GGUF, e.g. ``m.Q4_K_M.gguf.json``,
the name the converter writes): evaluation results are merged into it under ``"evaluations"``,
without touching keys others wrote (the converter's plan and measurements)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput


def sidecar_path(model: Path) -> Path:
    return Path(str(model) + ".json")


def read_sidecar(model: Path) -> dict[str, Any]:
    path = sidecar_path(model)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path.name}: the model's sidecar file is not valid JSON ({exc}); fix or remove it."
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path.name}: the model's sidecar file does not hold a JSON object; fix or remove it.")
    return data


def merge_evaluation(model: Path, key: str, result: dict[str, Any]) -> Path:
    """Set ``evaluations[key] = result`` and write the file atomically (temporary name, then rename)."""
    data = read_sidecar(model)
    evaluations = data.get("evaluations")
    if not isinstance(evaluations, dict):
        evaluations = {}
    evaluations[key] = result
    data["evaluations"] = evaluations
    path = sidecar_path(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
