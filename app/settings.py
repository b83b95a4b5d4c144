"""Persistent user settings (QSettings): last folders, recent models, threads, default formats, theme."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings

ORG = "quantpress"
APP = "quantpress"
MAX_RECENT = 10

DEFAULTS: dict[str, Any] = {
    "theme": "system",  # system | light | dark
    "threads": 0,  # 0 = all cores
    "default_formats": ["Q4_K_M"],
    "last_model_dir": "",
    "last_output_dir": "",
    "last_file_dir": "",
    "recent_models": [],
    "context_tokens": 4096,
    "kv_type": "f16",
}


def settings() -> QSettings:
    return QSettings(ORG, APP)


def get(key: str) -> Any:
    default = DEFAULTS.get(key)
    value = settings().value(key, default)
    if isinstance(default, list):
        if value is None or value == "":
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if isinstance(default, int) and not isinstance(default, bool):
        try:
            return int(str(value))
        except (TypeError, ValueError):
            return default
    return value


def put(key: str, value: Any) -> None:
    settings().setValue(key, value)


def add_recent_model(source: str) -> list[str]:
    recent = [s for s in get("recent_models") if s != source]
    recent.insert(0, source)
    recent = recent[:MAX_RECENT]
    put("recent_models", recent)
    return recent
