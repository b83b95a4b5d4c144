"""``quantpress unpack FILE.gguf OUT_DIR``: rebuild a Hugging Face folder from a GGUF file."""

from __future__ import annotations

import argparse
import sys

from quantpress.core.cli.output import format_bytes, print_json, progress_line
from quantpress.core.jobs import Throttle

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "unpack",
        help="GGUF -> Hugging Face folder (dequantized safetensors, config, tokenizer)",
        description="Dequantize every tensor of a GGUF file, undo llama.cpp's Q/K permutation and write "
        "a Hugging Face folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).",
    )
    p.add_argument("gguf", help="the .gguf file")
    p.add_argument("out_dir", help="the folder to create (must not exist or be empty)")
    p.add_argument(
        "--dtype",
        choices=("F32", "F16", "BF16"),
        default="F32",
        help="weight dtype to write (default F32: holds the dequantized values exactly)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.gguf.unpack import unpack_gguf

    report = Throttle(progress_line(60), 0.2) if sys.stderr.isatty() and not args.json else (lambda _p: None)
    result = unpack_gguf(args.gguf, args.out_dir, dtype=args.dtype, report=report)
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print(
            f"{result.out_dir}: {result.architecture}, {result.n_tensors} tensors, "
            f"{result.n_params / 1e6:.1f}M parameters as {result.dtype}, {format_bytes(result.n_bytes)} "
            f"({result.seconds:.1f} s)"
        )
    return 0
