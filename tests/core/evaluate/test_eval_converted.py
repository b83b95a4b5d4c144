"""Acceptance on the converter's own outputs for the demo model (slow: a conversion and four passes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from quantpress.core.chat import ChatSession, ChatSettings
from quantpress.core.evaluate import evaluate, read_sidecar, result_key

pytestmark = pytest.mark.slow
CTX, TOKENS, THREADS = 128, 1024, 1


@pytest.fixture(scope="module")
def converted(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    out = tmp_path_factory.mktemp("converted")
    formats = ["F32", "Q8_0", "Q4_K_M", "Q2_K"]
    plan = plan_conversion(open_source(demo_model_dir), formats, out)
    convert(plan)
    return {f: Path(o.path) for f, o in zip(formats, plan.outputs, strict=True)}


def test_converted_formats_order_by_kld_and_land_in_the_sidecar(converted: dict[str, Path], tmp_path: Path) -> None:
    f32 = converted["F32"]
    same = evaluate(f32, f32, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=tmp_path)
    assert same.kld_mean == pytest.approx(0.0, abs=1e-6) and same.top1_agreement == 1.0
    results = {
        f: evaluate(converted[f], f32, max_tokens=TOKENS, ctx_tokens=CTX, threads=THREADS, cache_dir=tmp_path)
        for f in ("Q8_0", "Q4_K_M", "Q2_K")
    }
    kld = {f: r.kld_mean for f, r in results.items()}
    assert kld["Q8_0"] < kld["Q4_K_M"] < kld["Q2_K"], kld
    for f, r in results.items():
        sidecar = read_sidecar(converted[f])
        assert sidecar["evaluations"][result_key(r)]["kld_mean"] == r.kld_mean
        assert len(sidecar) > 1  # the converter's own keys are still there


def test_chat_on_converted_q4_k_m(converted: dict[str, Path]) -> None:
    session = ChatSession.load(converted["Q4_K_M"], ChatSettings(temperature=0.0, max_tokens=16, threads=THREADS))
    try:
        assert not session.uses_fallback_template
        assert "Tokyo" in session.send("What is the capital of Japan?").text
    finally:
        session.close()
