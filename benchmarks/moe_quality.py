"""Q4_K_M quality on a generated Qwen3-MoE: quantpress's converter vs llama.cpp's pipeline
(convert_hf_to_gguf.py to F16, then llama_model_quantize), KL-divergence to the F32 GGUF on held-out
text (resources/eval/heldout.txt), paired per token, in the same run.

    .venv/bin/python -m benchmarks.moe_quality [--formats Q4_K_M,Q2_K] [--chunks 4] [--write]

The model is benchmarks/convert_moe.py's generator at a smaller size (4 layers x 16 experts of
512 x 512, hidden 512; Gaussian rows with outliers): random weights, so this measures how well each
pipeline keeps an expert-routed network's outputs, not a trained model's quality. quantpress runs with
its defaults (importance estimated from the weights, engine auto); llama.cpp without an imatrix.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.convert import (
    SDIST_DIR,
    heldout_chunks,
    kld_tokens,
    logprobs,
    paired,
    run_measured,
    vendor_dir,
)
from benchmarks.convert_moe import CONFIG as LARGE
from benchmarks.convert_moe import build, finish

CONFIG = {**LARGE, "hidden_size": 512, "moe_intermediate_size": 512, "num_experts": 16, "num_experts_per_tok": 4,
          "num_hidden_layers": 4}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="Q4_K_M,Q2_K")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of BENCHMARKS.md")
    args = ap.parse_args()
    from quantpress.core.gguf.reference import llama_quantize

    model = build(Path(tempfile.gettempdir()) / "qp-large" / "gen-qwen3moe-16x-small", config=CONFIG)
    work = Path(tempfile.mkdtemp(prefix="qp-bench-moeq-"))
    py, vendor = sys.executable, vendor_dir(SDIST_DIR)
    env = dict(os.environ, PYTHONPATH=str(vendor / "gguf-py"))
    run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16", "--outfile",
                  str(work / "ref-F16.gguf")], env)
    formats = args.formats.split(",")
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", *[a for f in formats for a in
                  ("-f", f)], "--out", str(work), "--json"])
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", chunks)
    rows = []
    for fmt in formats:
        llama_quantize(work / "ref-F16.gguf", work / f"ref-{fmt}.gguf", fmt)
        k_ref = kld_tokens(ref, logprobs(work / f"ref-{fmt}.gguf", chunks))
        k_qp = kld_tokens(ref, logprobs(work / f"{model.name}-{fmt}.gguf", chunks))
        diff, se = paired(k_qp, k_ref)
        rows.append((fmt, float(k_ref.mean()), float(k_qp.mean()), diff, se,
                     (work / f"ref-{fmt}.gguf").stat().st_size, (work / f"{model.name}-{fmt}.gguf").stat().st_size))
    mib = 2**20
    lines = ["## Quality on a generated mixture-of-experts model", "",
             f"`benchmarks/moe_quality.py`: Qwen3-MoE shapes ({CONFIG['num_hidden_layers']} layers x "
             f"{CONFIG['num_experts']} experts of {CONFIG['moe_intermediate_size']} x {CONFIG['hidden_size']}, top-"
             f"{CONFIG['num_experts_per_tok']}), random weights; KL-divergence to quantpress's F32 GGUF over "
             f"{len(chunks)} x {args.n_ctx} tokens of resources/eval/heldout.txt; quantpress with its defaults, "
             "llama.cpp = convert_hf_to_gguf.py F16 + llama_model_quantize, no imatrix. Measured "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"Command: `.venv/bin/python -m benchmarks.moe_quality --formats {args.formats} --chunks {args.chunks} --write`",
             "", "| format | llama.cpp KLD | quantpress KLD | quantpress − llama.cpp (± SE) | size MiB (llama.cpp / quantpress) |",
             "|---|---|---|---|---|"]
    for fmt, k_ref, k_qp, diff, se, b_ref, b_qp in rows:
        lines.append(f"| {fmt} | {k_ref:.5f} | {k_qp:.5f} | {diff:+.5f} ± {se:.5f} | {b_ref / mib:.1f} / {b_qp / mib:.1f} |")
    finish("\n".join(lines + [""]), rows, work, args.write)


if __name__ == "__main__":
    main()
