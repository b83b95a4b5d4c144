"""Quality on a generated Qwen3-MoE: quantpress's converter vs llama.cpp's pipeline
(convert_hf_to_gguf.py to F16, then llama_model_quantize), KL-divergence to the F32 GGUF on held-out
text (resources/eval/heldout.txt), paired per token, in the same run; without and with calibration text.

    .venv/bin/python -m benchmarks.moe_quality [--formats Q4_K_M,Q2_K] [--chunks 4] [--write]

The model is benchmarks/convert_moe.py's generator at a smaller size (4 layers x 16 experts of
512 x 512, hidden 512; Gaussian rows with outliers): random weights, so this measures how well each
pipeline keeps an expert-routed network's outputs, not a trained model's quality.

Two comparisons per format:
- without calibration text: quantpress with its defaults (importance estimated from the weights,
  engine auto) against llama.cpp without an imatrix;
- with calibration text (quantpress's default text): ``quantpress convert --calibration default``
  against llama.cpp given an imatrix of the same text. llama-cpp-python ships no imatrix tool, so the
  imatrix llama.cpp gets is quantpress's own (core.calibration.compute_imatrix with the defaults
  ``--calibration default`` uses: 512-token chunks, up to 32768 tokens; per-expert rows for the
  routed experts), written as a llama.cpp GGUF imatrix file and read back before use.
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
    from quantpress.core.calibration import compute_imatrix, load_imatrix, save_imatrix
    from quantpress.core.gguf.reference import llama_quantize

    model = build(Path(tempfile.gettempdir()) / "qp-large" / "gen-qwen3moe-16x-small", config=CONFIG)
    work = Path(tempfile.mkdtemp(prefix="qp-bench-moeq-"))
    py, vendor = sys.executable, vendor_dir(SDIST_DIR)
    env = dict(os.environ, PYTHONPATH=str(vendor / "gguf-py"))
    run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16", "--outfile",
                  str(work / "ref-F16.gguf")], env)
    formats = args.formats.split(",")
    fmt_args = [a for f in formats for a in ("-f", f)]
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", *fmt_args, "--out", str(work),
                  "--json"])
    (work / "cal").mkdir()
    cal_seconds, _, cal_out = run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), *fmt_args,
                                            "--calibration", "default", "--device", "cpu", "--out",
                                            str(work / "cal"), "--json"])
    t0 = time.monotonic()
    imatrix = compute_imatrix(model, device="cpu")  # what --calibration default computes, for llama.cpp
    imatrix_seconds = time.monotonic() - t0
    imatrix_file = save_imatrix(imatrix, work / "default-text.imatrix.gguf")
    back = load_imatrix(imatrix_file)
    (work / "ggml").mkdir()  # quantpress given that file with ggml's quantizer (the engine llama.cpp uses)
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), *fmt_args, "--imatrix", str(imatrix_file),
                  "--engine", "ggml", "--out", str(work / "ggml"), "--json"])
    importance = {n: v for n in back.names if (v := back.importance(n)) is not None}
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", chunks)
    rows = []
    for fmt in formats:
        llama_quantize(work / "ref-F16.gguf", work / f"ref-{fmt}.gguf", fmt)
        llama_quantize(work / "ref-F16.gguf", work / f"ref-imatrix-{fmt}.gguf", fmt, imatrix=importance)
        files = {"llama.cpp": work / f"ref-{fmt}.gguf", "quantpress": work / f"{model.name}-{fmt}.gguf",
                 "llama.cpp imatrix": work / f"ref-imatrix-{fmt}.gguf", "quantpress text": work / "cal" / f"{model.name}-{fmt}.gguf",
                 "quantpress ggml": work / "ggml" / f"{model.name}-{fmt}.gguf"}
        k = {name: kld_tokens(ref, logprobs(path, chunks)) for name, path in files.items()}
        plain, text = paired(k["quantpress"], k["llama.cpp"]), paired(k["quantpress text"], k["llama.cpp imatrix"])
        rows.append({"format": fmt, **{f"kld {n}": float(v.mean()) for n, v in k.items()},
                     "diff plain": plain, "diff text": text, "diff ggml": paired(k["quantpress ggml"], k["llama.cpp imatrix"]),
                     **{f"bytes {n}": path.stat().st_size for n, path in files.items()}})
    mib = 2**20
    uncovered = back.experts_without_tokens
    lines = ["## Quality on a generated mixture-of-experts model", "",
             f"`benchmarks/moe_quality.py`: Qwen3-MoE shapes ({CONFIG['num_hidden_layers']} layers x "
             f"{CONFIG['num_experts']} experts of {CONFIG['moe_intermediate_size']} x {CONFIG['hidden_size']}, top-"
             f"{CONFIG['num_experts_per_tok']}), random weights; KL-divergence to quantpress's F32 GGUF over "
             f"{len(chunks)} x {args.n_ctx} tokens of resources/eval/heldout.txt. Without text: quantpress with its "
             "defaults (importance estimated from the weights) vs llama.cpp = convert_hf_to_gguf.py F16 + "
             "llama_model_quantize, no imatrix. With text: `quantpress convert --calibration default` (the built-in "
             f"calibration text, {back.n_tokens} tokens, per-expert statistics through the router; pass + writing "
             f"{cal_seconds:.0f} s) vs the same llama.cpp pipeline given an imatrix of the same text; llama-cpp-python "
             "has no imatrix tool, so that imatrix is quantpress's own (compute_imatrix with the same defaults, "
             f"{imatrix_seconds:.0f} s), written as a llama.cpp GGUF imatrix file and read back "
             f"({len(uncovered)} expert tensors with experts that got no tokens); `--engine ggml`: `quantpress convert "
             "--imatrix` that file with ggml's quantizer, the one llama.cpp runs (engine auto uses quantpress's native "
             "k-quant kernels with a measured imatrix, core/quant/auto.py). 2 shared CPU cores. Measured "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"Command: `.venv/bin/python -m benchmarks.moe_quality --formats {args.formats} --chunks {args.chunks} --write`",
             "", "| format | llama.cpp KLD | quantpress KLD | quantpress − llama.cpp (± SE) | llama.cpp + imatrix KLD | "
             "quantpress + text KLD | quantpress − llama.cpp, with text (± SE) | same, `--engine ggml` (± SE) | "
             "size MiB (llama.cpp / quantpress) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        (dp, sp), (dt, st), (dg, sg) = r["diff plain"], r["diff text"], r["diff ggml"]
        lines.append(f"| {r['format']} | {r['kld llama.cpp']:.5f} | {r['kld quantpress']:.5f} | {dp:+.5f} ± {sp:.5f} | "
                     f"{r['kld llama.cpp imatrix']:.5f} | {r['kld quantpress text']:.5f} | {dt:+.5f} ± {st:.5f} | "
                     f"{dg:+.5f} ± {sg:.5f} | "
                     f"{r['bytes llama.cpp'] / mib:.1f} / {r['bytes quantpress'] / mib:.1f} |")
    print(cal_out[-2000:])
    finish("\n".join(lines + [""]), rows, work, args.write)


if __name__ == "__main__":
    main()
