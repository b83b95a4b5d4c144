"""Where quantpress keeps its files: one cache-root policy for every module.

- ``cache_dir()``: ``$QUANTPRESS_CACHE_DIR`` or the platform's user cache folder (platformdirs).
- ``models_dir()``: models quantpress makes or keeps (the demo model, outputs of Hub downloads).
- ``eval_reference_dir()``: cached reference log-probabilities of evaluations.
- ``<cache>/best-fit``: the best-fit planner's measured losses per model (core/gguf/loss_cache.py).
- ``hub_cache_dir()``: huggingface_hub's own cache (``HF_HUB_CACHE``), which quantpress reads and
  downloads into only through huggingface_hub's APIs, and never writes outputs into.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "QUANTPRESS_CACHE_DIR"


def cache_dir() -> Path:
    """quantpress's cache root: ``$QUANTPRESS_CACHE_DIR`` or the platform user cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("quantpress", appauthor=False))


def models_dir() -> Path:
    return cache_dir() / "models"


def eval_reference_dir() -> Path:
    return cache_dir() / "eval-reference"


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
