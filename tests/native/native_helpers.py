"""Shared data for the native-kernel tests: random rows and real weights of the demo model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def random_rows(rows: int, n_per_row: int, seed: int = 0, scale: float = 0.02) -> np.ndarray:
    """Heavy-ish tailed rows like real weights: a Gaussian plus a few large outliers."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n_per_row)).astype(np.float32) * scale
    outliers = rng.random((rows, n_per_row)) < 0.002
    x[outliers] *= 8
    return x


def random_importance(n_per_row: int, seed: int = 1) -> np.ndarray:
    """Synthetic importance: mean x^2 of heavy-tailed (Student-t, 3 dof) activations per column."""
    rng = np.random.default_rng(seed)
    act = rng.standard_t(3, size=(64, n_per_row)) * rng.lognormal(0, 1, size=n_per_row)
    return np.mean(act**2, axis=0).astype(np.float32)


@lru_cache(maxsize=4)
def demo_weights(model_dir: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Selected 2-D float32 weights of the demo model's model.safetensors (C-contiguous)."""
    from safetensors.numpy import safe_open

    out = {}
    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
        for name in names:
            w = f.get_tensor(name)
            out[name] = np.ascontiguousarray(w.astype(np.float32))
    return out


def demo_weight_names(model_dir: Path) -> list[str]:
    """All 2-D weight names of the demo model."""
    from safetensors.numpy import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
        return [k for k in f.keys() if len(f.get_slice(k).get_shape()) == 2]
