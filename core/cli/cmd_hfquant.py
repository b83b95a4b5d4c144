"""``quantpress fp8 MODEL --out DIR`` and ``quantpress nf4 MODEL --out DIR``: calibration-free quantized
Hugging Face folders (core/hfquant). ``--plan`` prints the exact weight-file size and writes nothing."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from quantpress.core.cli.output import format_bytes, print_json, progress_line

ORDER = 36


# command -> (help, description)
COMMANDS: dict[str, tuple[str, str]] = {
    "fp8": ("FP8 W8A8-dynamic for vLLM/transformers (compressed-tensors float-quantized, no calibration)",
            "Quantize a Hugging Face folder's linear layers to float8 e4m3 with one scale per output channel; "
            "activations are quantized per token at run time."),
    "nf4": ("NF4 4-bit with double quantization in bitsandbytes' layout (no calibration)",
            "Quantize a Hugging Face folder's linear layers to NormalFloat-4 in blocks of 64 with double-quantized "
            "absmax, as transformers saves a bitsandbytes 4-bit model."),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, (help_text, description) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=description)
        p.add_argument("model", help="Hugging Face model folder (safetensors), or 'demo'")
        p.add_argument("--out", help="output folder (required unless --plan)")
        p.add_argument("--plan", action="store_true", help="only show what would be written and its exact size")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(func=run, scheme_command=name)


def resolve_model(arg: str) -> Path:
    if arg == "demo":
        from quantpress.core.demo import ensure_demo_model

        return Path(ensure_demo_model())
    return Path(arg)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.errors import InvalidInput
    from quantpress.core.hfquant import weights_only
    from quantpress.core.hfquant.plan import plan_hf_quant
    from quantpress.core.hfquant.write import convert_weights_only
    from quantpress.core.jobs import ignore

    model = resolve_model(args.model)
    scheme, quantize_module = weights_only(args.scheme_command, model)
    plan = plan_hf_quant(model, scheme)
    if args.plan:
        summary = {"format": plan.format, "file_bytes": plan.file_bytes, "quantized": len(plan.quantized),
                   "kept_in_float": list(plan.kept), "shards": len(plan.shards)}
        if args.json:
            print_json(summary)
        else:
            print(f"{plan.format}: {format_bytes(plan.file_bytes)} of weights in {len(plan.shards)} shards, "
                  f"{len(plan.quantized)} linears quantized, {len(plan.kept)} kept in float")
        return 0
    if not args.out:
        raise InvalidInput("give --out FOLDER (or --plan to only see the size)")
    result = convert_weights_only(model, Path(args.out), scheme, quantize_module,
                                  report=ignore if args.json else progress_line())
    return show_result(args, result, "")


def show_result(args: argparse.Namespace, result: Any, detail: str) -> int:
    """Print a HfQuantResult as JSON or one line (``detail``: extra words after the format)."""
    if args.json:
        print_json(asdict(result))
    else:
        sys.stderr.write("\n")
        print(f"wrote {result.output} ({result.format}{detail}, {format_bytes(result.file_bytes)} of weights) in "
              f"{result.seconds:.0f} s on {result.device}, {result.n_tokens} calibration tokens")
    return 0
