"""``quantpress awq MODEL --out DIR``: AWQ int4 (compressed-tensors, AutoAWQ GEMM, or AWQ for GGUF)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantpress.core.cli.output import format_bytes, print_json, progress_line

ORDER = 35


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("awq", help="AWQ 4-bit quantization (activation-aware, calibrated layer by layer)",
                       description="Quantize a Hugging Face model folder with AWQ (int4, zero points, groups).")
    p.add_argument("model", help="Hugging Face model folder (safetensors), or 'demo'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="compressed-tensors",
                   help="compressed-tensors (default), autoawq, fp (scaled weights), or gguf:<TYPE> e.g. gguf:Q4_K_M")
    p.add_argument("--group-size", type=int, default=128, choices=(128, 64, 32))
    p.add_argument("--calibration", default="default", help="calibration text: a .txt/.jsonl file or 'default'")
    p.add_argument("--samples", type=int, default=None, help="calibration rows of --seqlen tokens")
    p.add_argument("--seqlen", type=int, default=None, help="tokens per calibration row (default 512)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default: CUDA when torch sees a GPU, else the CPU), cpu or cuda")
    p.add_argument("--no-scale-search", action="store_true", help="ablation: skip the scale search")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--no-clip-search", dest="clip_search", action="store_false", default=None,
                      help="skip the clip search (ablation; the default for gguf:* formats)")
    clip.add_argument("--clip-search", dest="clip_search", action="store_true",
                      help="run the clip search also for gguf:* formats (measured to hurt Q4_K_M on the demo model)")
    p.add_argument("--plan", action="store_true", help="only show the plan (group sizes per layer), write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.awq.export import SIDECAR
    from quantpress.core.awq.pipeline import awq_convert, default_clip_search
    from quantpress.core.awq.run import AwqSettings, plan_awq
    from quantpress.core.calibration.text import load_calibration_text
    from quantpress.core.jobs import ignore

    defaults = AwqSettings()
    settings = AwqSettings(group_size=args.group_size, samples=args.samples or defaults.samples,
                           seqlen=args.seqlen or defaults.seqlen, device=args.device,
                           scale_search=not args.no_scale_search,
                           clip_search=default_clip_search(args.format) if args.clip_search is None else args.clip_search)
    from quantpress.core.inspect import resolve_source

    model = Path(resolve_source(args.model))
    plan = plan_awq(model, settings, uniform=args.format == "autoawq")
    if args.plan:
        summary = f"{plan.hf_class}, {plan.n_layers} layers, {len(plan.linears)} linears, group size {settings.group_size}"
        _show(args, plan, [summary, *(f"note: {note}" for note in plan.notes)])
        return 0
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    text = None if args.calibration == "default" else load_calibration_text(args.calibration)
    if (Path(args.out) / SIDECAR).is_file():  # an older output of ours (any other folder is refused)
        print(f"note: {args.out} exists; it will be replaced when the new output is complete", file=sys.stderr)
    result = awq_convert(model, args.out, format=args.format, settings=settings, text=text,
                         calibration_label=str(args.calibration), report=ignore if args.json else progress_line())
    if not args.json:
        sys.stderr.write("\n")
    _show(args, result, [f"wrote {result.output} ({result.format}) in {result.seconds:.0f} s on {result.device}, "
                         f"peak RSS {format_bytes(result.peak_rss_bytes)}, {result.n_tokens} calibration tokens",
                         *(f"  {g}" for g in result.gguf_files)])
    return 0


def _show(args: argparse.Namespace, value: object, lines: list[str]) -> None:
    """``value`` as JSON with --json, else the human lines."""
    if args.json:
        print_json(value)
    else:
        print("\n".join(lines))
