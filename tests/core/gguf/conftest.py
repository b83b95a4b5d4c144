"""Fixtures for the GGUF converter tests: tiny models built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_models import tiny_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny("qwen2") -> the tiny HF folder for that architecture (built on first use)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return lambda arch: tiny_model(arch, root)
