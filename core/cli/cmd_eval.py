"""``quantpress eval MODEL [--reference REF]``: perplexity, and KL-divergence against a reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantpress.core.cli.output import print_json, progress_line

ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="measure perplexity and KL-divergence against a reference",
                       description="Evaluate a .gguf file (llama.cpp), an AWQ output folder (torch int4 kernels) or "
                                   "a Hugging Face folder (float32 torch), optionally against a reference of the same "
                                   "model: e.g. an AWQ folder against the folder it was made from, or a GGUF against "
                                   "the F16/F32 GGUF.")
    p.add_argument("model", help="a .gguf file, an AWQ output folder or a Hugging Face model folder")
    p.add_argument("--reference", help="the same model in higher precision: an F16/F32 .gguf or the original folder")
    p.add_argument("--text", help="a UTF-8 text file (default: the built-in held-out text)")
    p.add_argument("--tokens", type=int, default=4096, help="use at most this many text tokens (default 4096)")
    p.add_argument("--ctx", type=int, default=512, help="context (chunk) length in tokens (default 512)")
    p.add_argument("--kv-type", choices=("f16", "q8_0", "q4_0"), default="f16", help="KV cache type of MODEL")
    p.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--no-save", action="store_true", help="do not write the result into MODEL's sidecar .json")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.chat import KVCacheType
    from quantpress.core.evaluate import evaluate, read_eval_text

    text = read_eval_text(args.text) if args.text else None
    result = evaluate(
        Path(args.model),
        Path(args.reference) if args.reference else None,
        text=text,
        max_tokens=args.tokens,
        ctx_tokens=args.ctx,
        kv_type=KVCacheType(args.kv_type),
        threads=args.threads,
        save=not args.no_save,
        report=progress_line() if sys.stderr.isatty() else (lambda p: None),
    )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if args.json:
        print_json(result)
        return 0
    print(f"model      {result.model.name}  ({result.tokens} tokens scored, ctx {result.ctx_tokens})")
    print(f"perplexity {result.perplexity:.4f}")
    if result.reference is not None:
        print(f"reference  {result.reference.name}: perplexity {result.reference_perplexity:.4f}"
              f"  (Δ {result.delta_perplexity:+.4f})")
        print(f"KLD        mean {result.kld_mean:.6f}  p99 {result.kld_p99:.6f}")
        print(f"top-1      {100 * (result.top1_agreement or 0):.2f}% same as the reference")
    return 0
