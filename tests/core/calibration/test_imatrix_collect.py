"""compute_imatrix against a whole-model reference, per architecture, on real (tiny) models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quantpress.core.calibration.collect import calibration_chunks, compute_imatrix
from quantpress.core.calibration.text import default_calibration_text
from quantpress.core.errors import Cancelled
from quantpress.core.jobs import CancelToken, Progress

TEXT = default_calibration_text()[:30_000]

EXPECTED = {  # GGUF names per decoder layer
    "llama": {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"},
    "phi3": {"attn_qkv", "attn_output", "ffn_up", "ffn_down"},
}


def _reference(folder: Path, n_ctx: int, max_tokens: int) -> dict[str, np.ndarray]:
    """Mean x² per column with the whole model loaded and hooks on every linear."""
    import torch
    from quantpress.core.calibration.layerwise import LayerwiseModel
    from transformers import AutoModelForCausalLM

    chunks, _ = calibration_chunks(folder, TEXT, n_ctx=n_ctx, max_tokens=max_tokens)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    names = LayerwiseModel(folder)
    stats: dict[str, list] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            gname = names.gguf_name(name + ".weight")

            def hook(_m, args, gname=gname):  # type: ignore[no-untyped-def]
                x = args[0].reshape(-1, args[0].shape[-1]).double()
                stats.setdefault(gname, []).append((x * x).sum(0))

            hooks.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(torch.tensor(chunks.rows))
    return {k: (sum(v) / chunks.n_tokens).float().numpy() for k, v in stats.items()}


@pytest.mark.parametrize("arch", ["llama", "smollm", "qwen2", "qwen3", "gemma3", "phi3", "mistral"])
def test_matches_whole_model_reference(tiny, arch: str) -> None:  # type: ignore[no-untyped-def]
    folder = tiny(arch)
    im = compute_imatrix(folder, TEXT, n_ctx=64, max_tokens=256, batch_chunks=3)
    assert im.n_tokens == 256 and im.chunk_count == 4 and im.chunk_size == 64
    ref = _reference(folder, 64, 256)
    assert set(im.names) == set(ref)
    kinds = {n.split(".")[2] for n in im.names}
    assert kinds == EXPECTED.get(arch, EXPECTED["llama"])
    for name in im.names:
        got = im.importance(name)
        assert got is not None
        np.testing.assert_allclose(got, ref[name], rtol=2e-4, atol=1e-7)


def test_progress_and_cancel(tiny) -> None:  # type: ignore[no-untyped-def]
    folder = tiny("llama")
    seen: list[Progress] = []
    compute_imatrix(folder, TEXT, n_ctx=64, max_tokens=128, report=seen.append)
    assert seen[-1].fraction == 1.0 and any("layer 2/2" in p.message for p in seen)

    token = CancelToken()

    def cancel_at_layer_2(p: Progress) -> None:
        if "layer 2" in p.message:
            token.cancel()

    with pytest.raises(Cancelled):
        compute_imatrix(folder, TEXT, n_ctx=64, max_tokens=640, batch_chunks=1, report=cancel_at_layer_2,
                        cancel=token)


def test_demo_model_end_to_end(demo_model_dir: Path, tmp_path: Path) -> None:
    """The default text on the demo model: every blk linear, usable by llama.cpp's quantizer."""
    import ctypes

    import llama_cpp
    from quantpress.core.calibration.imatrix import LlamaImatrixData, load_imatrix, save_imatrix
    from quantpress.core.demo import demo_gguf_path

    im = compute_imatrix(demo_model_dir, max_tokens=512)
    assert len(im.names) == 30 * 7 and im.datasets == ("quantpress-default-calibration",)
    back = load_imatrix(save_imatrix(im, tmp_path / "demo.imatrix.gguf"))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = 15, True, 2
    data = LlamaImatrixData(back)
    params.imatrix = data.pointer
    out = tmp_path / "q4km.gguf"
    assert llama_cpp.llama_model_quantize(str(demo_gguf_path()).encode(), str(out).encode(), ctypes.byref(params)) == 0
