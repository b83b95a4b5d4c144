"""Fixtures for the quantized-source tests: the tiny float llama every quantized copy is made from."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import tiny_model

    return tiny_model("llama", tmp_path_factory.mktemp("dequant-tiny"))
