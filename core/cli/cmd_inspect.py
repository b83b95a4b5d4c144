"""``quantpress inspect MODEL``: describe a model (HF folder, GGUF file, Hub repo id or 'demo')
from its metadata only."""

from __future__ import annotations

import argparse
from collections import Counter

from quantpress.core.cli.output import format_bytes, print_json

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inspect", help="describe a model: architecture, sizes, tensors (no weights are loaded)")
    p.add_argument("model", help="HF folder, .gguf file, Hub repo id (org/name) or 'demo'")
    p.add_argument("--json", action="store_true", help="print the full description (incl. tensors) as JSON")
    p.add_argument("--tensors", action="store_true", help="also list every tensor (text output)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.inspect import open_model

    info = open_model(args.model)
    if args.json:
        data = {k: v for k, v in info.__dict__.items() if k != "config"}
        data["params"] = info.n_params
        data["weight_bytes"] = info.weight_bytes
        print_json(data)
        return 0
    rows = [
        ("name", info.name), ("source", f"{info.source} ({info.kind.value})"),
        ("architecture", f"{info.architecture} -> gguf '{info.gguf_arch or '?'}'"),
        ("parameters", f"{info.n_params:,} ({info.n_params / 1e9:.3f} B)"),
        ("weights", f"{format_bytes(info.weight_bytes)} ({info.dtype})"),
        ("layers", info.n_layers), ("heads / kv heads", f"{info.n_heads} / {info.n_kv_heads}"),
        ("head dim (k / v)", f"{info.head_dim} / {info.head_dim_v}"), ("hidden / ffn", f"{info.hidden_size} / {info.ffn_size}"),
        ("vocab", info.vocab_size), ("context length", info.context_length),
        ("sliding window", f"{info.sliding_window} on {len(info.swa_layers)} layers" if info.swa_layers else "none"),
        ("tied embeddings", info.tied_embeddings),
        ("experts", f"{info.n_experts} ({info.n_experts_used} used)" if info.n_experts else "none"),
        ("tensors", f"{len(info.tensors)} ({', '.join(f'{n} {t}' for t, n in Counter(t.dtype for t in info.tensors).most_common())})"),
        ("convertible", "yes" if info.convertible else f"no: {info.not_convertible_reason}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.tensors:
        for t in info.tensors:
            print(f"  {t.name:<50} {str(list(t.shape)):<20} {t.dtype:<6} {format_bytes(t.n_bytes)}")
    return 0
