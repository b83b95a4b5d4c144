"""``quantpress gptq MODEL --out DIR``: GPTQ int4 (compressed-tensors W4A16 pack-quantized or GPTQ v1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantpress.core.cli.output import format_bytes, print_json, progress_line

ORDER = 36


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gptq", help="GPTQ 4-bit quantization (error-compensating, calibrated layer by layer)",
                       description="Quantize a Hugging Face model folder with GPTQ (int4, symmetric groups).")
    p.add_argument("model", help="Hugging Face model folder (safetensors), or 'demo'")
    p.add_argument("--out", help="output folder (required unless --plan)")
    p.add_argument("--format", default="compressed-tensors", choices=("compressed-tensors", "gptq"),
                   help="compressed-tensors W4A16 pack-quantized (default; vLLM, transformers) or gptq (GPTQ v1: "
                        "GPTQModel, vLLM)")
    p.add_argument("--group-size", type=int, default=128, choices=(128, 64, 32),
                   help="largest group size; a smaller one is used when it does not divide every input width")
    p.add_argument("--act-order", default="off", choices=("off", "weight"),
                   help="process columns by decreasing activation energy (groups stay contiguous)")
    p.add_argument("--calibration", default="default", help="calibration text: a .txt/.jsonl file or 'default'")
    p.add_argument("--samples", type=int, default=None, help="calibration rows of --seqlen tokens (default 4)")
    p.add_argument("--seqlen", type=int, default=None, help="tokens per calibration row (default 512)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default: CUDA when torch sees a GPU, else the CPU), cpu or cuda")
    p.add_argument("--rtn", action="store_true", help="baseline: plain rounding to the same int4 groups, no GPTQ")
    p.add_argument("--plan", action="store_true", help="only show what would be written and its exact size")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.calibration.text import load_calibration_text
    from quantpress.core.cli.cmd_hfquant import resolve_model, show_result
    from quantpress.core.errors import InvalidInput
    from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert, plan_gptq
    from quantpress.core.jobs import ignore

    defaults = GptqSettings()
    settings = GptqSettings(format=args.format, group_size=args.group_size, act_order=args.act_order,
                            samples=args.samples or defaults.samples, seqlen=args.seqlen or defaults.seqlen,
                            device=args.device, method="rtn" if args.rtn else "gptq")
    model = resolve_model(args.model)
    plan, group_size = plan_gptq(model, settings)
    if args.plan:
        summary = {"format": f"GPTQ_INT4_G{group_size}", "layout": args.format, "group_size": group_size,
                   "file_bytes": plan.file_bytes, "quantized": len(plan.quantized), "kept_in_float": list(plan.kept)}
        if args.json:
            print_json(summary)
        else:
            print(f"GPTQ int4 g{group_size} ({args.format}): {format_bytes(plan.file_bytes)} of weights, "
                  f"{len(plan.quantized)} linears quantized, {len(plan.kept)} kept in float")
        return 0
    if not args.out:
        raise InvalidInput("give --out FOLDER (or --plan to only see the size)")
    text = None if args.calibration == "default" else load_calibration_text(args.calibration)
    result = gptq_convert(model, Path(args.out), settings=settings, text=text,
                          calibration_label=str(Path(args.calibration).name if text else "default"),
                          report=ignore if args.json else progress_line())
    return show_result(args, result, f", {args.format}")
