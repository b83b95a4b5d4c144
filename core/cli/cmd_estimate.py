"""``quantpress estimate MODEL``: per format, memory at a context length and whether it fits this
machine (or a "what if" one: --vram/--ram)."""

from __future__ import annotations

import argparse

from quantpress.core.cli.output import format_bytes, print_json

ORDER = 25


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("estimate", help="memory needed per format and whether it fits (GPU / partial / CPU)")
    p.add_argument("model", help="HF folder, .gguf file, Hub repo id (org/name) or 'demo'")
    p.add_argument("--context", type=int, default=4096, help="context length in tokens (default 4096)")
    p.add_argument("--batch", type=int, default=512, help="batch size for prompt processing (default 512)")
    p.add_argument("--kv-type", choices=("f16", "q8_0", "q4_0"), default="f16", help="KV cache type")
    p.add_argument("--vram", type=float, default=None, metavar="GIB", help="plan for one GPU with this much VRAM (0: none)")
    p.add_argument("--ram", type=float, default=None, metavar="GIB", help="plan for this much free RAM")
    p.add_argument("--budget", type=float, default=None, metavar="GIB", help="also recommend the best format under this size")
    p.add_argument("--format", action="append", dest="formats", metavar="NAME", help="only these formats (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _fit(e) -> str:  # type: ignore[no-untyped-def]
    return f"partial {e.gpu_layers}L" if e.fit == "partial" else e.fit


def run(args: argparse.Namespace) -> int:
    from quantpress.core.estimate import estimate
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.inspect import open_model
    from quantpress.core.memory import RuntimeConfig

    cfg = RuntimeConfig(n_ctx=args.context, n_batch=args.batch, n_ubatch=args.batch, kv_type=args.kv_type)
    hw = detect_hardware().with_overrides(vram_gib=args.vram, ram_gib=args.ram)
    budget = int(args.budget * 1024**3) if args.budget else None
    est = estimate(open_model(args.model), hw, cfg, formats=args.formats, budget_bytes=budget)
    if args.json:
        print_json(est)
        return 0
    m = est.model
    gpus = ", ".join(f"{g.name} {format_bytes(g.vram_free_bytes)} free" for g in hw.gpus) or "none"
    print(f"{m.name}: {m.architecture}, {m.params / 1e9:.3f} B params, {m.n_layers} layers, trained context {m.context_length}")
    if m.n_experts:
        print(f"mixture of experts: {m.n_experts} experts, {m.n_experts_used} per token; "
              f"{m.active_params / 1e9:.3f} B of {m.params / 1e9:.3f} B params active per token")
    print(f"machine: RAM {format_bytes(hw.ram_available_bytes)} free of {format_bytes(hw.ram_total_bytes)}, GPU {gpus}"
          + (f" (what-if: {', '.join(hw.overridden)})" if hw.overridden else ""))
    print(f"context {cfg.n_ctx}, batch {cfg.n_batch}, KV {cfg.kv_type}{', flash-attn' if cfg.fa else ''}")
    if hw.gpus:
        from quantpress.core.memory import gpu_runtime_bytes

        gpu = hw.gpus[0]
        how = ("measured on this GPU" if gpu.runtime_bytes is not None
               else "the CUDA default, for a what-if GPU" if gpu.backend == "override"
               else f"the {gpu.backend} default; measure it with `quantpress doctor --gpu-probe`")
        print(f"GPU runtime overhead in VRAM figures: {format_bytes(gpu_runtime_bytes(hw.gpus))} ({how})")
    print()
    head = ("format", "bpw", "file", "weights", "KV cache", "compute", "total", "fit", "max ctx on GPU")
    rows = [(e.format, f"{e.bits_per_weight:.2f}",
             "-" if e.file_bytes is None else format_bytes(e.file_bytes) + ("" if e.file_bytes_exact else "~"),
             format_bytes(e.weights_bytes), format_bytes(e.kv_cache_bytes), format_bytes(e.compute_bytes),
             format_bytes(e.total_bytes), _fit(e), str(e.max_context_on_gpu) if e.max_context_on_gpu else "-")
            for e in est.formats]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    vision = next((e for e in est.formats if e.mmproj_bytes), None)
    if vision is not None:
        print(f"\nvision projector (mmproj): file {format_bytes(vision.mmproj_bytes)} + compute "
              f"{format_bytes(vision.mmproj_compute_bytes)}, counted in each GGUF row's total")
    moe = [e for e in est.formats if e.cpu_moe_layers > 0]
    if moe:
        print("\nGPU + experts in RAM (llama.cpp --n-cpu-moe N: the routed experts of the first N layers in RAM):")
        for e in moe:
            print(f"  {e.format}: N = {e.cpu_moe_layers}, VRAM {format_bytes(e.cpu_moe_vram_bytes)}, "
                  f"RAM {format_bytes(e.cpu_moe_ram_bytes)}")
    print()
    for rec in est.recommendations:
        print(f"{rec.goal}: {rec.format or '-'} ({rec.reason})")
    for w in est.warnings:
        print(f"warning: {w}")
    print("\nGGUF file sizes are exact; RAM on CPU is calibrated to ~5% (BENCHMARKS.md); '~' = approximate; "
          "non-GGUF rows are approximate.")
    return 0
