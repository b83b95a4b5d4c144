"""Streaming a large mixture-of-experts model: quantpress's converter vs llama.cpp's pipeline
(convert_hf_to_gguf.py to F16, then llama_model_quantize) on a generated Qwen3-MoE with 128 experts
and about 1.8 GB of bf16 weights, in the same run. Claims checked: peak RSS <= 4 x the largest expert
matrix + 300 MiB (the experts are read and written one expert matrix at a time), and wall time.

    .venv/bin/python -m benchmarks.convert_moe [--time-formats Q4_K_M,Q8_0] [--write]

The model (benchmarks/generated_model.py weights: Gaussian rows with outliers; random, so no KLD) has
3 layers of 128 experts of 1536 x 512, hidden 512, and the demo model's tokenizer (llama.cpp's converter
needs a BPE pre-tokenizer it knows; Qwen3-MoE takes no SentencePiece vocabulary there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.convert import run_measured, time_pipelines, write_section
from benchmarks.generated_model import TOKENIZER_FILES, _built_aside, write_shards

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 512,
    "intermediate_size": 3072, "moe_intermediate_size": 1536, "num_experts": 128, "num_experts_per_tok": 8,
    "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": 3,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "hidden_act": "silu", "vocab_size": 49152,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
}


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, m, v, e = cfg["hidden_size"], cfg["moe_intermediate_size"], cfg["vocab_size"], cfg["num_experts"]
    q, kv, d = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"], cfg["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,),
                                          "lm_head.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
                   p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,),
                   p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                   p + "mlp.gate.weight": (e, h)}
        for x in range(e):
            shapes |= {p + f"mlp.experts.{x}.gate_proj.weight": (m, h), p + f"mlp.experts.{x}.up_proj.weight": (m, h),
                       p + f"mlp.experts.{x}.down_proj.weight": (h, m)}
    return shapes


def build(out: Path, seed: int = 0, config: dict | None = None) -> Path:
    """The generated model folder (built aside and renamed; reused when complete). One shard per layer."""
    cfg = config or CONFIG

    def write(tmp: Path) -> None:
        shapes = tensor_shapes(cfg)
        groups: dict[str, list[str]] = {}
        for name in shapes:
            groups.setdefault(name.split(".")[2] if name.startswith("model.layers.") else "rest", []).append(name)
        write_shards(tmp, shapes, list(groups.values()), seed, cfg)

    from quantpress.core.demo import ensure_demo_model

    return _built_aside(out, ensure_demo_model(), TOKENIZER_FILES, write)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-formats", default="Q4_K_M,Q8_0", help="formats timed end to end")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of BENCHMARKS.md")
    args = ap.parse_args()
    model = Path(tempfile.gettempdir()) / "qp-large" / "gen-qwen3moe-128x"
    # Built in a child: a forked child's ru_maxrss starts at its parent's peak, so the measuring
    # process must stay small.
    subprocess.run([sys.executable, "-c", f"from pathlib import Path; from benchmarks.convert_moe import build; build(Path({str(model)!r}))"],
                   cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="qp-bench-moe-"))
    formats = args.time_formats.split(",")
    rows = time_pipelines(model, formats, formats, work)
    for fmt in formats:  # quantpress again without importance weights (llama-quantize's own behaviour)
        t, rss, _ = run_measured([sys.executable, "-m", "quantpress.core.cli", "convert", str(model), "-f", fmt,
                                  "--calibration", "none", "--out", str(work / "none"), "--json"])
        rows[fmt] |= {"qp_none_s": t, "qp_none_rss": rss}
    mib = 2**20
    expert = CONFIG["moe_intermediate_size"] * CONFIG["hidden_size"] * 2
    src = sum(p.stat().st_size for p in model.glob("*.safetensors"))
    bound = 4 * expert + 300 * mib
    lines = ["## Conversion of a large generated mixture-of-experts model", "",
             f"`benchmarks/convert_moe.py`: Qwen3-MoE shapes, {CONFIG['num_hidden_layers']} layers x "
             f"{CONFIG['num_experts']} experts of {CONFIG['moe_intermediate_size']} x {CONFIG['hidden_size']}, "
             f"{src / mib:.0f} MiB bf16 in one safetensors shard per layer, random weights, the demo model's "
             "49,152-token tokenizer. llama.cpp = its converter to F16 "
             "(which stacks each layer's experts in memory), then llama_model_quantize; quantpress = one "
             "`quantpress convert` process (default calibration: importance estimated from the weights). Each "
             "step its own process, os.wait4; 2 shared CPU cores; measured "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} at the end.",
             "", f"Command: `.venv/bin/python -m benchmarks.convert_moe --time-formats {args.time_formats} --write`", "",
             "| format | llama.cpp s (F16 conversion + quantize) | quantpress s (default / --calibration none) | "
             "speed-up (default / none) | llama.cpp peak RSS MiB | quantpress peak RSS MiB (default / none) | "
             "bound MiB | output MiB (llama.cpp / quantpress) |",
             "|---|---|---|---|---|---|---|---|"]
    for f in formats:
        r = rows[f]
        lines.append(f"| {f} | {r['ref_s']:.1f} ({r['ref_conv_s']:.1f} + {r['ref_s'] - r['ref_conv_s']:.1f}) | "
                     f"{r['qp_s']:.1f} / {r['qp_none_s']:.1f} | {r['ref_s'] / r['qp_s']:.2f}x / "
                     f"{r['ref_s'] / r['qp_none_s']:.2f}x | {r['ref_rss'] / mib:.0f} | "
                     f"{r['qp_rss'] / mib:.0f} / {r['qp_none_rss'] / mib:.0f} | {bound / mib:.0f} | "
                     f"{r['ref_bytes'] / mib:.0f} / {r['qp_bytes'] / mib:.0f} |")
    lines += ["", f"Bound = largest expert matrix ({expert / mib:.1f} MiB bf16) x 4 + 300 MiB.", ""]
    finish("\n".join(lines), rows, work, args.write)


def finish(report: str, rows: object, work: Path, write: bool) -> None:
    """Print the report, keep the numbers (results.json) and drop the GB of outputs; --write: BENCHMARKS.md."""
    print(report)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    for f in work.rglob("*.gguf"):
        f.unlink()
    if write:
        write_section(report)


if __name__ == "__main__":
    main()
