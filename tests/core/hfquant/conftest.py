"""Fixtures for the quantized-folder tests: tiny models per architecture (built once per session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from tiny_models import tiny_model

    root = tmp_path_factory.mktemp("hfquant-tiny-models")
    return lambda arch: tiny_model(arch, root)
