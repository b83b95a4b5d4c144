"""Test models whose weights were never quantized, trained here on the CPU (no download).

The demo model's weights are dequantized Q4_1 values (core/demo.py): a 32-block type with a minimum
represents them exactly, which flatters some quantizer choices. Quality decisions are therefore
measured on these as well, saved in bf16 like real checkpoints:

- ``finetuned``: the demo model after a short full fine-tune (AdamW) on the built-in calibration text
  (never the evaluation text), saved in bf16. Same shapes as the demo (576-wide rows: most k-quants
  fall back to 32-block types). ``grid_residual`` 0.02: the weights stay on the demo's Q4_1 grid
  (the demo: 0.00), so this model is no evidence about never-quantized weights.
- ``finetuned_far``: the same fine-tune with a 20x learning rate (50 steps at 1e-3): ``grid_residual``
  0.30. Its weights sit in blurred clusters around the old grid levels, which 32-block types with a
  minimum (Q4_1, Q5_1, the Q5_K fallback) re-grid badly: on it llama.cpp's Q4_1 has 2.8x Q4_0's KLD.
- ``scratch``: a small Llama (hidden 256, 6 layers, GQA 4/2 heads, FFN 768, tied 49,152-token
  embeddings, the demo's tokenizer) trained from random initialisation on the same text. Every row is
  a multiple of 256, so the k-quants apply everywhere: the other kind of model.
- ``qwen3``: the same shapes as ``scratch`` but the Qwen3 class (per-head q/k RMS norms, GGUF arch
  ``qwen3``), trained from random initialisation on the same text: a second architecture family.
- ``scratch576``: a Llama with the demo's widths (hidden 576, FFN 1536, 9/3 heads) and 6 layers, trained
  from random initialisation: never quantized, and its 576-wide rows make the k-quants fall back to
  32-block types as on the demo. The one test model where both hold.

Each is built once into the benchmark cache (atomically: built aside, renamed) and reused; training
is seeded, single-process, a few minutes on 2 cores.

    .venv/bin/python -m benchmarks.trained_models finetuned|finetuned_far|scratch|qwen3|scratch576
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.generated_model import CONFIG, TOKENIZER_FILES, _built_aside

CACHE = Path(tempfile.gettempdir()) / "qp-trained"
# The generated benchmark model's Llama config, scaled down.
SCRATCH_CONFIG = CONFIG | {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                           "tie_word_embeddings": True}
# (steps, learning rate, batch rows, tokens per row): each trains in minutes on 2 idle cores. Adam
# moves each weight by about lr per step: "finetuned" moves ~1e-3 in all (stays on the grid),
# "finetuned_far" ~1e-2, a good part of a Q4_1 step (grid_residual measures it).
RECIPES = {"finetuned": (40, 5e-5, 4, 128), "finetuned_far": (50, 1e-3, 2, 128), "scratch": (120, 3e-3, 8, 128),
           "qwen3": (120, 3e-3, 8, 128), "scratch576": (120, 3e-3, 8, 128), "qwen3_896": (120, 3e-3, 8, 128)}
# Models trained from random initialisation: recipe name -> (transformers config class, model class, model_type).
FROM_SCRATCH = {"scratch": ("LlamaConfig", "LlamaForCausalLM", "llama"),
                "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen3"),
                "scratch576": ("LlamaConfig", "LlamaForCausalLM", "llama"),
                "qwen3_896": ("Qwen3Config", "Qwen3ForCausalLM", "qwen3")}
# Shapes of a from-scratch model where they differ from SCRATCH_CONFIG: scratch576 takes SmolLM2-135M's widths;
# qwen3_896 Qwen2.5-0.5B's hidden width and heads with an FFN that 256 does not divide either, so every
# k-quant tensor of it falls back to a 32-block type.
SCRATCH_SHAPES = {"scratch576": {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                                 "num_key_value_heads": 3, "head_dim": 64},
                  "qwen3_896": {"hidden_size": 896, "intermediate_size": 2432, "num_hidden_layers": 4,
                                "num_attention_heads": 14, "num_key_value_heads": 2, "head_dim": 64}}
# One line each, for benchmark reports.
DESCRIPTIONS = {
    "demo": "SmolLM2-135M-Instruct rebuilt from its Q4_1 GGUF (F32 safetensors, 576-wide rows, weights on a Q4_1 grid)",
    "finetuned": "the demo model after a short bf16 fine-tune on the calibration text (`benchmarks/trained_models.py`; "
                 "576-wide rows, weights still on the Q4_1 grid: grid residual 0.02)",
    "finetuned_far": "the same fine-tune at a 20x learning rate (576-wide rows, grid residual 0.30: blurred Q4_1 clusters)",
    "scratch": "a 6-layer Llama (hidden 256, FFN 768) trained from scratch on the CPU, saved in bf16 "
               "(`benchmarks/trained_models.py`; every row a multiple of 256)",
    "qwen3": "a 6-layer Qwen3 (hidden 256, FFN 768, q/k norms) trained from scratch on the CPU, saved in bf16 "
             "(`benchmarks/trained_models.py`; every row a multiple of 256)",
    "scratch576": "a 6-layer Llama with the demo's widths (hidden 576, FFN 1536) trained from scratch on the CPU, "
                  "saved in bf16 (`benchmarks/trained_models.py`; 576-wide rows, never quantized)",
    "qwen3_896": "a 4-layer Qwen3 (hidden 896, FFN 2432, 14/2 heads, q/k norms) trained from scratch on the CPU, "
                 "saved in bf16 (`benchmarks/trained_models.py`; no row a multiple of 256, never quantized)",
}


def grid_residual(folder: Path, rows: int = 256) -> float:
    """How far a model's 2-D weights sit from a Q4_1 grid: the median over tensors of the RMS error of
    min/max Q4_1 rounding of 32-weight blocks (first ``rows`` rows), relative to that of uniformly
    spread weights (step / sqrt 12). 0 = on a grid (the demo), about 1 = never quantized."""
    import numpy as np
    from safetensors import safe_open

    ratios = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:  # "pt": numpy has no bfloat16
            for name in st.keys():
                w = st.get_slice(name)
                shape = w.get_shape()
                if len(shape) != 2 or shape[1] % 32:
                    continue
                b = w[: min(rows, shape[0])].double().numpy().reshape(-1, 32)
                lo, hi = b.min(1, keepdims=True), b.max(1, keepdims=True)
                step = np.where(hi > lo, (hi - lo) / 15, 1.0)
                q = np.clip(np.round((b - lo) / step), 0, 15)
                rms = np.sqrt(((q * step + lo - b) ** 2).mean(1))
                ratios.append(float(np.median(rms / (step[:, 0] / np.sqrt(12)))))
    return float(np.median(ratios))


def _training_rows(tokenizer_dir: Path, n_ctx: int) -> Any:
    import torch
    from quantpress.core.calibration.text import default_calibration_text
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).encode(default_calibration_text()).ids
    n = len(ids) // n_ctx
    return torch.tensor(ids[: n * n_ctx]).view(n, n_ctx)


def _train(model: Any, rows: Any, steps: int, lr: float, batch: int, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    t0 = time.monotonic()
    for step in range(steps):
        pick = torch.randint(0, rows.shape[0], (batch,), generator=gen)
        x = rows[pick]
        # cosine decay after a short warm-up
        scale = min(1.0, (step + 1) / 10) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps} loss {loss.item():.3f} ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    model.eval()


def _save_bf16(model: Any, tmp: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})


def build(kind: str, demo: Path, cache: Path = CACHE) -> Path:
    """The folder of test model ``kind`` (``demo`` returns the demo folder itself)."""
    if kind == "demo":
        return demo
    steps, lr, batch, n_ctx = RECIPES[kind]

    def write(tmp: Path) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        if kind.startswith("finetuned"):
            model = AutoModelForCausalLM.from_pretrained(str(demo), dtype=torch.float32, local_files_only=True,
                                                         trust_remote_code=False, use_safetensors=True)
            config = json.loads((demo / "config.json").read_text())
        else:
            config_class, model_class, model_type = FROM_SCRATCH[kind]
            config = (dict(SCRATCH_CONFIG) | SCRATCH_SHAPES.get(kind, {})
                      | {"architectures": [model_class], "model_type": model_type})
            hf_config = getattr(transformers, config_class)(**{k: v for k, v in config.items()
                                                                  if k not in ("architectures", "model_type")})
            model = getattr(transformers, model_class)(hf_config)
        print(f"training the '{kind}' test model ({steps} steps) -> {cache / kind}", file=sys.stderr, flush=True)
        _train(model, _training_rows(demo, n_ctx), steps, lr, batch, seed=0)
        _save_bf16(model, tmp)
        config["torch_dtype"] = "bfloat16"
        config.pop("dtype", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))

    return _built_aside(cache / kind, demo, TOKENIZER_FILES, write)


if __name__ == "__main__":
    from quantpress.core.demo import ensure_demo_model

    for name in sys.argv[1:] or list(RECIPES):
        folder = build(name, ensure_demo_model())
        print(f"{folder}  (grid residual {grid_residual(folder):.2f}; 0 = on a Q4_1 grid, ~1 = never quantized)")
