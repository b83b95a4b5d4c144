"""evaluate() against an independent numpy computation over llama-cpp-python's own logits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.evaluate import default_eval_text, evaluate, result_key, sidecar_path
from quantpress.core.jobs import Progress

CTX = 64
TOKENS = 192  # 3 chunks of 64 -> 3 * 31 scored tokens
THREADS = 1  # fastest on a busy 2-core machine


@pytest.fixture(scope="module")
def ref_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests below: the Q8_0 reference pass is computed once (that is what the cache is for)."""
    return tmp_path_factory.mktemp("ref-cache")


def _independent_log_probs(path: Path, tokens: np.ndarray, n_chunks: int) -> np.ndarray:
    """Log-probs of every scored position, through llama-cpp-python's high-level API (logits_all)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=CTX, n_batch=CTX, logits_all=True, n_threads=THREADS,
                          n_threads_batch=THREADS, verbose=False)
    try:
        add_bos = llama_cpp.llama_vocab_get_add_bos(llm._model.vocab)
        rows = []
        for c in range(n_chunks):
            chunk = [int(t) for t in tokens[c * CTX : (c + 1) * CTX]]
            if add_bos:
                chunk[0] = llm.token_bos()
            llm.reset()
            llm.eval(chunk)
            logits = np.array(llm.scores[CTX // 2 : CTX - 1], dtype=np.float64)
            rows.append(logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
                        - logits.max(1, keepdims=True))
        return np.concatenate(rows)
    finally:
        llm.close()


def _tokens(path: Path) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=CTX, n_threads=THREADS, verbose=False)
    add_bos = llama_cpp.llama_vocab_get_add_bos(llm._model.vocab)
    toks = np.array(llm.tokenize(default_eval_text().text.encode(), add_bos=add_bos, special=False))
    llm.close()
    return toks


def test_matches_numpy_over_llama_cpp_logits(
    demo_gguf: Path, requantized: Callable[[str], Path], ref_cache: Path
) -> None:
    model, reference = demo_gguf, requantized("MOSTLY_Q8_0")
    progress: list[Progress] = []
    result = evaluate(model, reference, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS,
                      cache_dir=ref_cache, save=False, report=progress.append)

    tokens = _tokens(reference)
    n_chunks = TOKENS // CTX
    lq = _independent_log_probs(model, tokens, n_chunks)
    lp = _independent_log_probs(reference, tokens, n_chunks)
    targets = np.concatenate([tokens[c * CTX + CTX // 2 + 1 : (c + 1) * CTX] for c in range(n_chunks)])
    idx = np.arange(len(targets))
    ppl, ref_ppl = np.exp(-lq[idx, targets].mean()), np.exp(-lp[idx, targets].mean())
    # llama.cpp's definition leaves reference log-probs <= -16 out of the sum (perplexity.cpp)
    kld = np.where(lp > -16, np.exp(lp) * (lp - lq), 0.0).sum(axis=1)
    full_kld = (np.exp(lp) * (lp - lq)).sum(axis=1)
    top1 = (lq.argmax(1) == lp.argmax(1)).mean()

    assert result.tokens == len(targets) == n_chunks * (CTX - 1 - CTX // 2)
    assert result.perplexity == pytest.approx(ppl, rel=1e-3)
    assert result.reference_perplexity == pytest.approx(ref_ppl, rel=1e-3)
    assert result.delta_perplexity == pytest.approx(ppl - ref_ppl, rel=1e-3, abs=1e-3 * ref_ppl)
    assert result.kld_mean == pytest.approx(kld.mean(), rel=1e-3)
    assert result.kld_p99 == pytest.approx(np.percentile(kld, 99), rel=1e-3)
    assert result.top1_agreement == pytest.approx(top1, rel=1e-3)
    assert 0 < result.kld_mean < 1 and result.kld_p99 > result.kld_mean
    assert result.kld_mean == pytest.approx(full_kld.mean(), rel=1e-2)  # the cut-off barely matters
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("reference" in p.message for p in progress)


def test_model_against_itself(requantized: Callable[[str], Path], ref_cache: Path) -> None:
    q8 = requantized("MOSTLY_Q8_0")
    result = evaluate(q8, q8, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=ref_cache, save=False)
    assert result.kld_mean == pytest.approx(0.0, abs=1e-6)
    assert result.kld_p99 == pytest.approx(0.0, abs=1e-5)
    assert result.top1_agreement == 1.0
    assert result.delta_perplexity == pytest.approx(0.0, abs=1e-9)


def test_reference_is_cached_and_result_lands_in_the_sidecar(
    demo_gguf: Path, requantized: Callable[[str], Path], ref_cache: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.symlink_to(demo_gguf)
    sidecar_path(model).write_text(json.dumps({"format": "Q4_1", "evaluations": {"old": {"kld_mean": 1}}}))
    reference = requantized("MOSTLY_Q8_0")
    cache = ref_cache
    first = evaluate(model, reference, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1  # one reference pass for all tests here, no temporary folder left
    progress: list[Progress] = []
    second = evaluate(model, reference, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=cache,
                      report=progress.append)
    assert not any("reference" in p.message for p in progress)  # came from the cache
    assert second.kld_mean == first.kld_mean
    data = json.loads(sidecar_path(model).read_text())
    assert data["format"] == "Q4_1" and "old" in data["evaluations"]  # others' keys kept
    saved = data["evaluations"][result_key(second)]
    assert saved["kld_mean"] == second.kld_mean and saved["reference"] == str(reference)
