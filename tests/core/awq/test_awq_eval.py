"""``evaluate()`` on AWQ output folders: the int4 backend against the original HF folder (torch) or the
F32 GGUF (llama.cpp), with the numbers checked against a dense computation done here independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from quantpress.core.awq.pipeline import awq_convert
from quantpress.core.awq.run import AwqSettings
from quantpress.core.chat.types import KVCacheType
from quantpress.core.errors import InvalidInput
from quantpress.core.evaluate import default_eval_text, evaluate, read_sidecar, result_key

FAST = AwqSettings(samples=4, seqlen=64, search_samples=2, batch_rows=2, n_grid=6)
CTX, TOKENS = 64, 256


@pytest.fixture(scope="module")
def awq_folders(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("awq-eval")
    src = tiny("llama")
    awq_convert(src, root / "ct", settings=FAST)
    awq_convert(src, root / "gemm", format="autoawq", settings=FAST)
    return {"src": src, "ct": root / "ct", "gemm": root / "gemm"}


def _dense_kld(src: Path, awq: Path, tokens: np.ndarray, bos: int | None) -> tuple[float, float]:
    """Mean KL(original || AWQ) and the AWQ perplexity over the scored half of each chunk (first token
    replaced by BOS, as llama.cpp's perplexity tool does), from the AWQ weights dequantized to dense
    float32 (not the int4 kernel the evaluator uses)."""
    from quantpress.core.awq.quantizer import dequantize, unpack_compressed_tensors
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    quantized = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    state = {k: v for f in awq.glob("*.safetensors") for k, v in load_file(f).items()}
    dense = {}
    for key in [k for k in state if k.endswith(".weight_packed")]:
        module = key[: -len(".weight_packed")]
        q, s, z = unpack_compressed_tensors({k: state[f"{module}.{k}"] for k in
                                             ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape")})
        dense[f"{module}.weight"] = dequantize(q, s, z, q.shape[1] // s.shape[1])
    dense.update({k: v for k, v in state.items() if k.endswith(".weight") and "weight_" not in k})
    quantized.load_state_dict(dense, strict=False)
    first = CTX // 2
    klds, nlls = [], []
    with torch.no_grad():
        for c in range(len(tokens) // CTX):
            ids = torch.from_numpy(tokens[c * CTX:(c + 1) * CTX].astype(np.int64))[None]
            if bos is not None:
                ids[0, 0] = bos
            ref = torch.log_softmax(original(ids).logits[0, first:CTX - 1].double(), -1)
            lp = torch.log_softmax(quantized(ids).logits[0, first:CTX - 1].double(), -1)
            klds.append((ref.exp() * (ref - lp)).sum(-1))
            nlls.append(-lp.gather(1, ids[0, first + 1:, None]).squeeze(1))
    return float(torch.cat(klds).mean()), float(torch.cat(nlls).mean().exp())


def test_awq_folder_against_the_original_folder(awq_folders: dict[str, Path], tmp_path: Path) -> None:
    src, ct = awq_folders["src"], awq_folders["ct"]
    same = evaluate(src, src, max_tokens=TOKENS, ctx_tokens=CTX, cache_dir=tmp_path, save=False)
    assert same.kld_mean == pytest.approx(0.0, abs=1e-6) and same.top1_agreement == 1.0
    result = evaluate(ct, src, max_tokens=TOKENS, ctx_tokens=CTX, cache_dir=tmp_path)
    from quantpress.core.evaluate.torch_runner import TorchChunkRunner

    runner = TorchChunkRunner(src, CTX)
    assert runner.device == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto (issue 17)
    tokens = runner.tokenize(default_eval_text().text)[: result.chunks * CTX]
    kld, ppl = _dense_kld(src, ct, tokens, runner._tokenizer.bos_token_id if runner.add_bos() else None)
    assert result.kld_mean is not None and result.kld_mean > 1e-5  # int4 is not free
    assert result.kld_mean == pytest.approx(kld, rel=0.02, abs=2e-5)
    assert result.perplexity == pytest.approx(ppl, rel=1e-3)
    assert result.model_bytes == sum(f.stat().st_size for f in ct.glob("*.safetensors"))
    saved = read_sidecar(ct)["evaluations"][result_key(result)]
    assert saved["kld_mean"] == result.kld_mean and json.loads((ct / "config.json").read_text())


def test_autoawq_folder_gives_the_compressed_tensors_numbers(awq_folders: dict[str, Path], tmp_path: Path) -> None:
    """Same integers, fp16 scales in the AutoAWQ layout: the same KLD up to the scales' rounding."""
    kw = dict(max_tokens=TOKENS, ctx_tokens=CTX, cache_dir=tmp_path, save=False)
    ct = evaluate(awq_folders["ct"], awq_folders["src"], **kw)  # type: ignore[arg-type]
    gemm = evaluate(awq_folders["gemm"], awq_folders["src"], **kw)  # type: ignore[arg-type]
    assert gemm.kld_mean == pytest.approx(ct.kld_mean, rel=0.05)


def test_awq_folder_against_the_f32_gguf(awq_folders: dict[str, Path], tmp_path: Path) -> None:
    """A GGUF reference (llama.cpp) for a folder model (torch): same tokens, comparable numbers."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    src = awq_folders["src"]
    plan = plan_conversion(open_source(src), ["F32"], tmp_path)
    convert(plan)
    f32 = Path(plan.outputs[0].path)
    kw = dict(max_tokens=TOKENS, ctx_tokens=CTX, cache_dir=tmp_path / "cache", save=False, threads=1)
    floor = evaluate(src, f32, **kw)  # type: ignore[arg-type]
    assert floor.kld_mean is not None and floor.kld_mean < 1e-4  # torch float32 vs llama.cpp F32
    via_gguf = evaluate(awq_folders["ct"], f32, **kw)  # type: ignore[arg-type]
    via_folder = evaluate(awq_folders["ct"], src, **kw)  # type: ignore[arg-type]
    assert via_gguf.kld_mean == pytest.approx(via_folder.kld_mean, rel=0.05, abs=1e-4)


def test_folders_that_cannot_be_evaluated(awq_folders: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "config.json").write_text('{"vocab_size": 384}')
    with pytest.raises(InvalidInput, match="neither a quantized output"):
        evaluate(empty, cache_dir=tmp_path, save=False)
    with pytest.raises(InvalidInput, match="KV-cache"):
        evaluate(awq_folders["ct"], kv_type=KVCacheType.Q8_0, max_tokens=TOKENS, ctx_tokens=CTX, cache_dir=tmp_path,
                 save=False)


def test_cli_eval_of_an_awq_folder(awq_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from quantpress.core.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the reference cache goes to the user cache
    rc = main(["eval", str(awq_folders["gemm"]), "--reference", str(awq_folders["src"]), "--ctx", str(CTX),
               "--tokens", str(TOKENS), "--no-save", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kld_mean"] > 0 and out["tokens"] == (TOKENS // CTX) * (CTX - 1 - CTX // 2)


def test_int4_linear_kernel_and_dense_paths_agree() -> None:
    """Few rows go through torch's int4 kernel, many through the per-call dequantized weight: both
    must compute (q - z) · s exactly as the quantizer defines it."""
    from quantpress.core.awq.backend import DENSE_MIN_ROWS, make_int4_linear
    from quantpress.core.awq.quantizer import dequantize, quantize

    gen = torch.Generator().manual_seed(0)
    w, bias = torch.randn(96, 256, generator=gen), torch.randn(96, generator=gen)
    q, s, z = quantize(w, 64)
    lin = make_int4_linear(q, s, z, 64, bias)
    x = torch.randn(DENSE_MIN_ROWS + 3, 256, generator=gen)
    ref = x @ dequantize(q, s, z, 64).T + bias
    kernel = torch.cat([lin(x[i:i + 1]) for i in range(len(x))])  # one row at a time: the int4 kernel
    dense = lin(x)
    torch.testing.assert_close(kernel, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dense, ref, rtol=1e-5, atol=1e-5)
