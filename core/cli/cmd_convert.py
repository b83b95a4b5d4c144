"""``quantpress convert MODEL --format Q4_K_M [--format Q8_0 ...]``: HF folder or GGUF -> GGUF files."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from quantpress.core.errors import InvalidInput

if TYPE_CHECKING:
    from quantpress.core.gguf.plan import Overrides
    from quantpress.core.gguf.request import ConversionRequest

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from quantpress.core.cli.convert_target import add_target_arguments
    from quantpress.core.gguf.mixes import MIXES, POLICIES
    from quantpress.core.quant import ENGINE_CHOICES

    p = sub.add_parser("convert", help="convert a model to GGUF (one or more formats, one pass)",
                       description="Convert a Hugging Face folder (safetensors) or a GGUF file to GGUF formats. "
                       "Each source tensor is read once for all formats; nothing intermediate is written.")
    p.add_argument("model", help="HF folder, .gguf file, or 'demo'")
    p.add_argument("--format", "-f", dest="formats", action="append", metavar="FORMAT",
                   type=str.upper, help=f"output format, repeatable: {', '.join(MIXES)} (or a target, below)")
    p.add_argument("--out", "-o", type=Path, help="output folder or .gguf file (default: a MODEL-gguf folder "
                   "beside the model, the one the GUI uses)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", metavar="FILE|default|weights|none",
                     help="importance weights: from a .txt/.jsonl text, 'default' (built-in text), 'weights' "
                          "(estimated from the model's own weights, no text; the default) or 'none' (plain "
                          "rounding, what llama-quantize does without an imatrix)")
    cal.add_argument("--imatrix", type=Path, metavar="FILE", help="use a llama.cpp imatrix file (.gguf or .dat)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where a calibration pass over text runs (--calibration default|FILE): auto (default: CUDA "
                        "when torch sees a GPU, else the CPU), cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="quantization threads (0 = all cores)")
    p.add_argument("--policy", choices=POLICIES, default="quantpress",
                   help="row-length fallbacks: quantpress (default: IQ4_NL where llama.cpp falls back from Q2_K/Q3_K "
                        "to Q4_0) or llama.cpp (identical types)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="quantizer: auto (default: per format, quantpress's kernels or importance only where "
                        "they measured no worse than llama.cpp on every test model), ggml (llama.cpp's), "
                        "native (quantpress's kernels wherever they exist)")
    p.add_argument("--output-type", help="type for output.weight (and tied embeddings), e.g. Q8_0")
    p.add_argument("--token-embedding-type", help="type for token_embd.weight, e.g. Q6_K")
    p.add_argument("--tensor-type", action="append", default=[], metavar="REGEX=TYPE",
                   help="per-tensor override, repeatable; first match wins, e.g. 'ffn_down=Q6_K'")
    p.add_argument("--mmproj", type=str.upper, choices=("F16", "Q8_0", "NONE"), default="F16",
                   help="for a multimodal wrapper (Gemma 3, Mistral 3): the vision projector's type, written as "
                        "mmproj-NAME-TYPE.gguf beside the model for llama.cpp's image chat (default F16), or none")
    p.add_argument("--dry-run", action="store_true", help="show the plan (types, exact sizes) and stop")
    p.add_argument("--save-plan", type=Path, metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object per output")
    add_target_arguments(p)
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> Overrides:
    from quantpress.core.gguf.plan import Overrides

    rules = []
    for item in args.tensor_type:
        pattern, sep, qtype = item.rpartition("=")
        if not sep or not pattern:
            raise InvalidInput(f"--tensor-type '{item}': expected REGEX=TYPE")
        rules.append((pattern, qtype.upper()))
    return Overrides(args.output_type and args.output_type.upper(),
                     args.token_embedding_type and args.token_embedding_type.upper(), tuple(rules))


def request_from_args(args: argparse.Namespace) -> ConversionRequest:
    """The ConversionRequest the Convert pane would build for the same choices."""
    from quantpress.core.gguf.plan import TEXTLESS_CALIBRATIONS, CalibrationKind
    from quantpress.core.gguf.request import ConversionRequest

    if args.imatrix is not None:
        kind, path = CalibrationKind.IMATRIX, args.imatrix
    elif args.calibration is None:
        kind, path = CalibrationKind.WEIGHTS, None
    elif args.calibration in (*TEXTLESS_CALIBRATIONS, CalibrationKind.DEFAULT.value):  # reserved words
        kind, path = CalibrationKind(args.calibration), None
    else:
        kind, path = CalibrationKind.FILE, args.calibration
    return ConversionRequest(tuple(args.formats), args.out, kind, path, _overrides(args), args.policy,
                             args.engine, args.threads, args.mmproj)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.cli.convert_target import plan_for_target, target_from_args
    from quantpress.core.cli.output import format_bytes, print_json, progress_line
    from quantpress.core.gguf.convert import check_outputs, convert
    from quantpress.core.gguf.source import open_source
    from quantpress.core.jobs import Throttle
    from quantpress.core.outputs import check_output_file, make_folder, output_folder

    target = target_from_args(args)
    if target is None and not args.formats:
        raise InvalidInput("choose an output: --format (e.g. Q4_K_M), --target-size, --target-bpw or --fit")
    model = open_source(args.model)  # 'demo' resolves in core.inspect
    plan = plan_for_target(model, target, args) if target is not None else request_from_args(args).plan(model)
    # Every input is validated before anything is created: a refused conversion leaves no folder.
    if not args.dry_run:
        check_outputs(plan)
    if args.save_plan:
        check_output_file(args.save_plan, [Path(plan.local_path or plan.source)], what="plan")
        make_folder(args.save_plan.parent)
        plan.save(args.save_plan)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.dry_run:
        if args.json:
            print_json([{"output": o.path, "format": o.format, "file_bytes": o.file_bytes,
                         "tensor_types": o.tensor_types} | ({"target": plan.target} if plan.target else {})
                        | ({"mmproj": plan.mmproj.path, "mmproj_bytes": plan.mmproj.file_bytes} if plan.mmproj else {})
                        for o in plan.outputs])
        else:
            print(plan.describe())
        return 0
    for o in plan.outputs:
        if Path(o.path).exists():
            print(f"note: {o.path} exists; it will be replaced when the new file is complete", file=sys.stderr)
    with ExitStack() as folders:  # created now, removed again if the conversion fails
        for folder in sorted({Path(o.path).parent for o in plan.outputs}):
            folders.enter_context(output_folder(folder))
        results = convert(plan, report=Throttle(progress_line(40), 0.5) if not args.json else (lambda p: None),
                          device=args.device)
    if not args.json:
        sys.stderr.write("\n")
        for r in results:
            on = f"  calibrated on {r.calibration_device}" if r.calibration_device else ""
            print(f"{r.format:7s} {format_bytes(r.file_bytes):>11s}  {r.seconds:6.1f} s  "
                  f"peak RSS {format_bytes(r.peak_rss_bytes)}  {r.output}{on}")
        if plan.mmproj is not None:
            print(f"{'mmproj':7s} {format_bytes(plan.mmproj.file_bytes):>11s}  vision projector "
                  f"({plan.mmproj.format})  {plan.mmproj.path}")
        for note in results[0].notes if results else ():  # one calibration for every output
            print(f"note: {note}", file=sys.stderr)
    else:
        for r in results:  # JSON lines: one object per output
            print(json.dumps({"output": r.output, "format": r.format, "file_bytes": r.file_bytes,
                              "seconds": r.seconds, "peak_rss_bytes": r.peak_rss_bytes,
                              "calibration_device": r.calibration_device or None, "mmproj": r.mmproj or None,
                              "uncalibrated_experts": {b: list(e) for b, e in r.uncalibrated_experts.items()}}),
                  flush=True)
    return 0
