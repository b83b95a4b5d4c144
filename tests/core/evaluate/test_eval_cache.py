"""The reference cache's encoding and housekeeping (pure numpy, fast)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.evaluate import metrics
from quantpress.core.evaluate.reference import TOP_K, ReferenceLogits, encode_rows, prune


def test_encoding_keeps_log_probs_within_half_a_step_and_the_top_k_exact() -> None:
    rng = np.random.default_rng(0)
    lp = metrics.log_softmax(rng.normal(0, 3, size=(5, 1000)).astype(np.float32))
    dense, scale_min, ids, top = encode_rows(lp)
    ref = ReferenceLogits(np.zeros(1, np.int32), np.zeros(5), lp.argmax(1).astype(np.int32), ids, top, dense,
                          scale_min, 1000)
    decoded = ref.log_probs(slice(0, 5))
    window = lp > (lp.max(1, keepdims=True) - 16)
    step = scale_min[:, :1].astype(np.float64)
    assert np.all(np.abs(decoded - lp)[window] <= (np.broadcast_to(step, lp.shape)[window] / 2 + 1e-6))
    rows = np.arange(5)[:, None]
    assert np.allclose(decoded[rows, ids], lp[rows, ids], atol=1e-6) and ids.shape == (5, TOP_K)
    kld = metrics.token_kld(decoded, lp)  # the encoding against its source: almost nothing
    assert np.all(np.abs(kld) < 1e-5)


def test_prune_keeps_the_newest_passes(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"k{i}").mkdir()
        os.utime(tmp_path / f"k{i}", (i, i))
    prune(tmp_path, keep=tmp_path / "k0", limit=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"]


def test_reference_cache_follows_the_one_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluations cache under the same root as the demo model (core.paths), $QUANTPRESS_CACHE_DIR included."""
    from quantpress.core.demo import demo_model_dir
    from quantpress.core.evaluate.reference import default_cache_dir

    monkeypatch.setenv("QUANTPRESS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir().is_relative_to(tmp_path) and demo_model_dir().is_relative_to(tmp_path)
