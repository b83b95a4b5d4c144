"""Quality ordering on the demo model (slow: several full evaluation passes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.chat import KVCacheType
from quantpress.core.evaluate import evaluate

pytestmark = pytest.mark.slow
CTX, TOKENS, THREADS = 128, 1024, 1


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ref-cache")


def test_f32_against_itself(requantized: Callable[[str], Path], cache: Path) -> None:
    f32 = requantized("ALL_F32")
    r = evaluate(f32, f32, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=cache, save=False)
    assert r.kld_mean == pytest.approx(0.0, abs=1e-6) and r.top1_agreement == 1.0
    assert r.delta_perplexity == pytest.approx(0.0, abs=1e-9)


def test_kld_orders_q8_0_q4_k_m_q2_k(requantized: Callable[[str], Path], cache: Path) -> None:
    f32 = requantized("ALL_F32")
    klds = {
        name: evaluate(requantized(name), f32, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS,
                       cache_dir=cache, save=False).kld_mean
        for name in ("MOSTLY_Q8_0", "MOSTLY_Q4_K_M", "MOSTLY_Q2_K")
    }
    assert klds["MOSTLY_Q8_0"] < klds["MOSTLY_Q4_K_M"] < klds["MOSTLY_Q2_K"], klds


def test_q8_0_kv_cache_costs_a_little_kld(requantized: Callable[[str], Path], cache: Path) -> None:
    """Same model, same text, same reference (its own f16-KV pass): the q8_0 KV cache's price."""
    q8 = requantized("MOSTLY_Q8_0")
    r = evaluate(q8, q8, kv_type=KVCacheType.Q8_0, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS,
                 cache_dir=cache, save=False)
    assert 0 < r.kld_mean < 0.05 and r.top1_agreement > 0.9
