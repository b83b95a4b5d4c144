"""Why a lower squared error gave a higher KL-divergence on the fine-tuned test model (issue 21).

``finetuned_far`` is the demo model (whose weights lie on a Q4_1 grid) after a short fine-tune: every
weight is an old grid level plus a small learned change Δ (about 2% of the weights' rms, less than a
5-bit step). A quantizer whose grid lines up with the old one (a scale-and-minimum search, Q4_1/Q5_1)
rounds each weight back toward its old level: its error E is close to −Δ, small in squared terms but
exactly the direction the fine-tune learned, so it undoes the fine-tune. This benchmark measures, for
each (type, engine):

- the share of the fine-tune the rounding undoes, −⟨E, Δ⟩ / ⟨Δ, Δ⟩ over every block linear (1: the
  weights are back at the base model's; 0: the error is unrelated to Δ; negative: it overshoots Δ), and
  the error's rms against Δ's;
- the KL-divergence to the fine-tuned model's F32 GGUF on held-out text of the model whose block
  linears are so rounded but stored in F32 (llama.cpp's runtime, so only the weights differ), next to
  KL(fine-tuned ‖ base): what undoing all of the fine-tune costs.

Also, for contrast, the same KLDs on ``qwen3`` (trained from scratch in bf16: no old grid), where the
ordering is the usual one.

    .venv/bin/python -m benchmarks.grid_reversion
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.convert import heldout_chunks, kld_tokens, logprobs  # noqa: E402

CHOICES = (("Q5_1", "ggml"), ("Q5_1", "native"), ("Q5_0", "ggml"), ("Q4_1", "native"), ("Q4_0", "ggml"))


def load(folder: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k).float().numpy() for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)


def rounded(w: np.ndarray, ggml_type: str, engine: str) -> np.ndarray:
    from quantpress.core.quant import decode, quantize_tensor

    data = quantize_tensor(np.ascontiguousarray(w, dtype=np.float32), ggml_type, None, 0, engine)
    return decode(np.asarray(data), ggml_type, w.shape[1])


def block_linears(weights: dict[str, np.ndarray]) -> list[str]:
    return [n for n, w in weights.items() if w.ndim == 2 and n.startswith("model.layers.") and w.shape[1] % 32 == 0]


def f32_gguf(folder: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "quantpress.core.cli", "convert", str(folder), "-f", "F32", "--out", str(out),
                    "--json"], check=True, capture_output=True)
    return out / f"{folder.name}-F32.gguf"


def rounded_model_kld(model: Path, ggml_type: str, engine: str, work: Path, chunks: list[list[int]],
                      ref: list[np.ndarray]) -> tuple[float, float]:
    """KLD (mean, SE) of ``model`` with its block linears rounded to ``ggml_type`` and stored F32."""
    import torch
    from safetensors.torch import save_file

    dst = work / f"{model.name}-{ggml_type}-{engine}"
    shutil.copytree(model, dst)
    weights = load(model)
    for n in block_linears(weights):
        weights[n] = rounded(weights[n], ggml_type, engine)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, str(dst / "model.safetensors"),
              metadata={"format": "pt"})
    k = kld_tokens(ref, logprobs(f32_gguf(dst, work), chunks))
    shutil.rmtree(dst)
    return float(k.mean()), float(k.std() / np.sqrt(len(k)))


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model

    from benchmarks.trained_models import build as build_test_model

    demo = ensure_demo_model()
    tuned, scratch = build_test_model("finetuned_far", demo), build_test_model("qwen3", demo)
    w_tuned, w_base = load(tuned), load(demo)
    names = block_linears(w_tuned)
    delta = {n: w_tuned[n] - w_base[n] for n in names}
    d2 = sum(float((d.astype(np.float64) ** 2).sum()) for d in delta.values())
    w2 = sum(float((w_tuned[n].astype(np.float64) ** 2).sum()) for n in names)
    print(f"finetuned_far: fine-tune change Δ = {np.sqrt(d2 / w2):.1%} of the block weights' rms "
          f"({len(names)} block linears)\n")
    undone: dict[tuple[str, str], tuple[float, float]] = {}
    for ggml_type, engine in CHOICES:
        dot = e2 = 0.0
        for n in names:
            e = rounded(w_tuned[n], ggml_type, engine).astype(np.float64) - w_tuned[n]
            dot += float((e * delta[n]).sum())
            e2 += float((e ** 2).sum())
        undone[(ggml_type, engine)] = (-dot / d2, float(np.sqrt(e2 / d2)))
    with tempfile.TemporaryDirectory(prefix="qp-bench-grid-") as tmp:
        work = Path(tmp)
        rows = {}
        for label, model in (("finetuned_far", tuned), ("qwen3", scratch)):
            chunks = heldout_chunks(model, 4, 256)
            ref = logprobs(f32_gguf(model, work / label), chunks)
            if label == "finetuned_far":
                base = kld_tokens(ref, logprobs(f32_gguf(demo, work / "base"), chunks))
                print(f"KL(finetuned_far ‖ demo), all of the fine-tune undone: {base.mean():.4f}\n")
            for choice in CHOICES:
                rows[(label, *choice)] = rounded_model_kld(model, *choice, work, chunks, ref)
                print(f"  {label} {choice}: {rows[(label, *choice)]}", file=sys.stderr, flush=True)
    print("| type | engine | share of the fine-tune undone | error rms / Δ rms | KLD finetuned_far (weights rounded, F32) "
          "| KLD qwen3 (same) |")
    print("|---|---|---:|---:|---:|---:|")
    for ggml_type, engine in CHOICES:
        share, ratio = undone[(ggml_type, engine)]
        a, b = rows[("finetuned_far", ggml_type, engine)], rows[("qwen3", ggml_type, engine)]
        print(f"| {ggml_type} | {engine} | {share:+.2f} | {ratio:.2f} | {a[0]:.4f} ± {a[1]:.4f} | {b[0]:.2e} ± {b[1]:.0e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
