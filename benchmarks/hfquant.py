"""Quantized Hugging Face folders on the demo model: GPTQ vs round-to-nearest and AWQ, FP8, NF4.

Every output is made by the ``quantpress`` CLI in its own process (timed), then evaluated by
``core.evaluate.evaluate`` against the original folder (KL-divergence per token in torch, the same held-out
text and chunks for all), and its weight files are compared with the size the estimator shows (exact plans
in core/hfquant). RTN = the same int4 groups as GPTQ by plain rounding (``quantpress gptq --rtn``).

    .venv/bin/python -m benchmarks.hfquant [--formats gptq,rtn,gptq-weight,awq,fp8,nf4] [--max-tokens 2048] [--write]

Checks printed under the table: GPTQ KLD ≤ 0.85 × RTN (same group size); NF4 KLD ≤ RTN int4 g64 (asymmetric,
AWQ's quantizer without scales or clips).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.convert import run_measured, write_section

# name -> (CLI arguments after the model, what it is)
RUNS: dict[str, tuple[list[str], str]] = {
    "gptq": (["gptq", "--device", "cpu"], "GPTQ int4, compressed-tensors (defaults: act-order off)"),
    "gptq-weight": (["gptq", "--device", "cpu", "--act-order", "weight"], "GPTQ int4, act-order weight"),
    "gptq-v1": (["gptq", "--device", "cpu", "--format", "gptq"], "GPTQ int4, GPTQ v1 layout"),
    "rtn": (["gptq", "--rtn"], "int4 symmetric, same groups, round-to-nearest"),
    "awq": (["awq", "--device", "cpu"], "AWQ int4 (asymmetric), compressed-tensors, defaults"),
    "fp8": (["fp8"], "FP8 e4m3 per-channel W8A8-dynamic, compressed-tensors"),
    "nf4": (["nf4"], "NF4, blocks of 64, double-quantized absmax (bitsandbytes layout)"),
}
ESTIMATOR_ROW = {"gptq": "GPTQ_INT4_G128", "rtn": "GPTQ_INT4_G128", "gptq-weight": "GPTQ_INT4_G128",
                 "fp8": "FP8_E4M3", "nf4": "NF4_DQ"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="rtn,gptq,gptq-weight,gptq-v1,awq,fp8,nf4")
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder; an output already there (with its sidecar) is evaluated, not made again")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.estimate import estimate
    from quantpress.core.evaluate.evaluate import evaluate
    from quantpress.core.gguf.source import open_source
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.memory import RuntimeConfig

    model = Path(ensure_demo_model())
    work = args.work or Path(tempfile.mkdtemp(prefix="qp-bench-hfq-"))
    est = {e.format: e for e in estimate(open_source(model), detect_hardware(), RuntimeConfig(n_ctx=512)).formats}
    saved = work / "results.json"  # rows of earlier runs in this work folder are kept, not measured again
    rows: dict[str, dict[str, Any]] = json.loads(saved.read_text()) if saved.is_file() else {}
    for name in args.formats.split(","):
        if name in rows:
            continue
        cli, what = RUNS[name]
        out = work / name
        done = next((side for side in (out / "quantpress_quant.json", out / "quantpress_awq.json") if side.is_file()),
                    None)
        if done is None:
            seconds, _, stdout = run_measured([sys.executable, "-m", "quantpress.core.cli", cli[0], str(model),
                                               "--out", str(out), "--json", *cli[1:]])
            made = json.loads(stdout)
        else:  # made by an earlier run in this work folder: its own record
            side = json.loads(done.read_text())
            made = side.get("result", side)
            seconds = float(made.get("seconds", float("nan")))
        res = evaluate(out, model, max_tokens=args.max_tokens, ctx_tokens=args.ctx, save=False)
        files = sum(p.stat().st_size for p in out.glob("*.safetensors"))
        fmt = made.get("format", "AWQ")
        row = est.get(ESTIMATOR_ROW.get(name, ""))
        rows[name] = {"what": what, "format": fmt, "seconds": seconds, "bytes": files,
                      "estimate": row.file_bytes if row is not None and name != "gptq-v1" else None,
                      "kld": res.kld_mean, "p99": res.kld_p99, "top1": res.top1_agreement, "ppl": res.perplexity,
                      "ref_ppl": res.reference_perplexity, "tokens": res.tokens}
        print(f"{name}: KLD {res.kld_mean:.4f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
        saved.write_text(json.dumps(rows, indent=1))  # as it goes: a long run keeps its rows
    report = render(rows, args)
    print(report)
    if args.write:
        write_section(report)


def render(rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    mib = 2**20
    any_row = next(iter(rows.values()))
    lines = ["### GPTQ, FP8 and NF4 folders (demo model)", "",
             "Demo model SmolLM2-135M-Instruct (F32 folder); KLD = mean KL(original ‖ quantized) per token on "
             f"{any_row['tokens']} scored tokens of resources/eval/heldout.txt ({args.ctx}-token chunks, "
             "`core.evaluate`, torch, reference = the original folder); calibration (GPTQ, AWQ) = the default "
             "text, 4×512 tokens. Each output made by its `quantpress` command in its own process on the CPU. "
             "The demo's 576-wide inputs are not a multiple of 128: GPTQ and AWQ use one group size for the "
             "whole checkpoint, 64. estimate = the Fit table's exact file size for that row.", "",
             f"Command: `.venv/bin/python -m benchmarks.hfquant --formats {','.join(rows)} --max-tokens "
             f"{args.max_tokens} --write` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
             f"{os.getloadavg()[0]:.1f} at the end)", "",
             "| output | format | weight files MiB | estimate MiB | KLD | KLD p99 | top-1 agree | perplexity | "
             "seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        est = r["estimate"]
        est_cell = "-" if est is None else ("= " if est == r["bytes"] else "≠ ") + f"{int(est) / mib:.2f}"
        lines.append(f"| {name}: {r['what']} | {r['format']} | {int(r['bytes']) / mib:.2f} | {est_cell} | "
                     f"{float(r['kld']):.4f} | {float(r['p99']):.3f} | {float(r['top1']):.3f} | "
                     f"{float(r['ppl']):.2f} | {float(r['seconds']):.0f} |")
    lines.append(f"| original (F32) | - | - | - | 0 | 0 | 1 | {float(any_row['ref_ppl']):.2f} | - |")
    checks = []
    if "gptq" in rows and "rtn" in rows:
        ratio = float(rows["gptq"]["kld"]) / float(rows["rtn"]["kld"])
        checks.append(f"GPTQ / RTN KLD = {ratio:.3f} (limit 0.85)")
    if "nf4" in rows and "rtn" in rows:
        checks.append(f"NF4 KLD {float(rows['nf4']['kld']):.4f} vs RTN int4 {float(rows['rtn']['kld']):.4f}")
    lines += ["", "; ".join(checks) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
