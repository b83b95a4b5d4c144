"""A large generated Llama-style model for conversion benchmarks (no download: random bf16 weights).

Shapes of a ~0.9B-parameter model (hidden 2048, 16 layers, GQA 32/8 heads, FFN 5632, untied
49,152-token embeddings) so every row is a multiple of 256 and k-quants apply everywhere; tokenizer
files are the demo model's. Written as two safetensors shards with an index, the way the Hub ships
models of this size. Weights are Gaussian with a per-row scale and a few outliers, like real ones.

    .venv/bin/python -m benchmarks.generated_model OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "hidden_act": "silu", "vocab_size": 49152, "tie_word_embeddings": False, "bos_token_id": 1,
    "eos_token_id": 2, "torch_dtype": "bfloat16",
}
# Issue 17's GPU model: FFN 8192 and tied embeddings (1.07 B parameters; Q4_K_M 669 MB, Q8_0 1143 MB).
CONFIG_1B2 = {**CONFIG, "intermediate_size": 8192, "tie_word_embeddings": True}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                   p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                   p + "post_attention_layernorm.weight": (h,)}
    return shapes


def _weights(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 1:
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= (0.02 * np.exp(0.3 * rng.standard_normal((shape[0], 1), dtype=np.float32)))
    outliers = rng.integers(0, x.size, size=max(1, x.size // 2000))
    x.flat[outliers] *= 8.0
    return x


def _built_aside(out: Path, copy_from: Path, names: Sequence[str], write: Callable[[Path], None]) -> Path:
    """``out`` if it is complete, else: ``write(tmp)``, copy ``names`` from ``copy_from`` (those that
    exist), rename ``tmp`` to ``out`` — an interrupted build never looks complete."""
    if (out / "config.json").exists():
        return out
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    for f in names:
        if (copy_from / f).exists():
            shutil.copy(copy_from / f, tmp / f)
    tmp.rename(out)
    return out


def build(out: Path, tokenizer_from: Path, shards: int = 2, seed: int = 0, config: dict | None = None) -> Path:
    """Write the model folder ``out`` (atomically: built aside, renamed) with ``config`` (default
    CONFIG). Returns ``out``."""
    cfg = config or CONFIG
    return _built_aside(out, tokenizer_from, TOKENIZER_FILES, lambda tmp: _write_generated(tmp, shards, seed, cfg))


def _write_generated(tmp: Path, shards: int, seed: int, config: dict) -> None:
    shapes = tensor_shapes(config)
    names = list(shapes)
    per_shard = -(-len(names) // shards)
    write_shards(tmp, shapes, [names[s * per_shard:(s + 1) * per_shard] for s in range(shards)], seed, config)


def write_shards(tmp: Path, shapes: dict[str, tuple[int, ...]], groups: Sequence[Sequence[str]], seed: int,
                 config: dict) -> None:
    """Random bf16 weights of ``shapes`` into one safetensors shard per group of names, with the
    index and config.json (one shard in memory at a time)."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(seed)
    weight_map: dict[str, str] = {}
    total = 0
    for s, names in enumerate(groups):
        fname = f"model-{s + 1:05d}-of-{len(groups):05d}.safetensors"
        chunk = {n: torch.from_numpy(_weights(shapes[n], rng)).to(torch.bfloat16) for n in names}
        total += sum(t.numel() * 2 for t in chunk.values())
        save_file(chunk, str(tmp / fname), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(chunk, fname)
        del chunk
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (tmp / "config.json").write_text(json.dumps(config, indent=1))


def off_grid_demo(out: Path, demo: Path, rel_noise: float = 0.05, seed: int = 0) -> Path:
    """The demo model with every 2-D weight multiplied by (1 + rel_noise * N(0, 1)).

    The demo's F32 weights are dequantized Q4_1 values (core/demo.py), which any 32-block type with a
    min and >= 4 bits (Q4_1, Q5_1) represents exactly: quality comparisons on it favour those types.
    A 5% multiplicative jitter moves the weights off that grid and keeps the model's behaviour; its
    own F32 GGUF is the KLD reference, so the jitter is not an error being measured."""
    from safetensors.numpy import load_file, save_file

    def write(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        weights = load_file(str(demo / "model.safetensors"))
        for name, w in weights.items():
            if w.ndim == 2:
                weights[name] = (w * (1 + rel_noise * rng.standard_normal(w.shape, dtype=np.float32))).astype(w.dtype)
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})

    return _built_aside(out, demo, ("config.json", *TOKENIZER_FILES), write)


if __name__ == "__main__":
    from quantpress.core.demo import ensure_demo_model

    print(build(Path(sys.argv[1]), ensure_demo_model()))
