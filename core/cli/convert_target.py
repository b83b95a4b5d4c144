"""``quantpress convert MODEL --target-size 4.5GB | --target-bpw 4.3 | --fit gpu|ram [--context N --kv-type T]``:
the options that let quantpress choose every tensor's type (core/gguf/best_fit.py) instead of a fixed mix."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantpress.core.errors import InvalidInput

if TYPE_CHECKING:
    from quantpress.core.gguf.plan import ConversionPlan
    from quantpress.core.gguf.targets import Target


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    from quantpress.core.memory import KV_TYPES

    group = p.add_argument_group("choose the types for a target (instead of --format)")
    one = group.add_mutually_exclusive_group()
    one.add_argument("--target-size", metavar="SIZE",
                     help="the most accurate file of at most SIZE (4.5GB = 10^9 bytes, 4.2GiB = 2^30)")
    one.add_argument("--target-bpw", type=float, metavar="BITS", help="the most accurate file at BITS bits per weight")
    one.add_argument("--fit", choices=("gpu", "ram"),
                     help="the most accurate file whose estimated memory at --context fits the GPU's free VRAM "
                          "(gpu) or the available RAM (ram)")
    group.add_argument("--context", type=int, default=4096, metavar="N", help="context tokens for --fit (default 4096)")
    group.add_argument("--kv-type", default="f16", choices=tuple(KV_TYPES), help="KV cache type for --fit (default f16)")
    group.add_argument("--sensitivity", choices=("runtime", "weights", "fisher"), default=None,
                       help="how each tensor's sensitivity is found: estimated from the weights and measured per "
                            "kind of tensor through llama.cpp on a temporary F16 copy (runtime, the default), "
                            "from the weights alone (weights: no copy, but blind to very large activations), or "
                            "by a calibration pass through the model (fisher; needs torch, slower)")
    group.add_argument("--remeasure", action="store_true",
                       help="measure the tensors' losses again instead of reusing what an earlier plan of this "
                            "model measured (kept in quantpress's cache until the model's files change)")
    group.add_argument("--memory", metavar="SIZE",
                       help="--fit within SIZE of VRAM (gpu) or RAM (ram) instead of what this machine has free")


def target_from_args(args: argparse.Namespace) -> Target | None:
    """The target the options ask for, or None (a fixed --format conversion)."""
    from quantpress.core.gguf.targets import Target, parse_size

    fit_only = [flag for flag, given in (("--memory", args.memory is not None),
                                         ("--context", args.context != 4096), ("--kv-type", args.kv_type != "f16"))
                if given]
    if args.target_size is None and args.target_bpw is None and args.fit is None:
        if args.sensitivity is not None or args.remeasure:
            flag = "--sensitivity" if args.sensitivity is not None else "--remeasure"
            raise InvalidInput(f"{flag} only applies with a target (--target-size, --target-bpw, --fit)")
        if fit_only:
            raise InvalidInput(f"{', '.join(fit_only)} only apply with --fit gpu|ram")
        return None
    if args.formats:
        raise InvalidInput("give either --format or a target (--target-size, --target-bpw, --fit), not both")
    if args.fit is None and fit_only:
        raise InvalidInput(f"{', '.join(fit_only)} only apply with --fit gpu|ram")
    if args.output_type or args.token_embedding_type or args.tensor_type or args.policy != "quantpress":
        raise InvalidInput("a target chooses every tensor's type itself: drop --output-type, "
                           "--token-embedding-type, --tensor-type and --policy")
    if args.target_size is not None:
        return Target.size(parse_size(args.target_size))
    if args.target_bpw is not None:
        return Target.bpw(args.target_bpw)
    memory = parse_size(args.memory) if args.memory is not None else None
    return Target.fit(args.fit, ctx_tokens=args.context, kv_type=args.kv_type, memory_bytes=memory)


def plan_for_target(model: Any, target: Target, args: argparse.Namespace) -> ConversionPlan:
    """plan_best_fit with the command's options, progress on stderr unless --json."""
    from quantpress.core.cli.output import end_progress_line, progress_line
    from quantpress.core.gguf.best_fit import plan_best_fit
    from quantpress.core.jobs import Throttle

    report = Throttle(progress_line(40), 0.5) if not args.json else (lambda p: None)
    out: Path | None = args.out
    plan = plan_best_fit(model, target, out, imatrix=args.imatrix, calibration=args.calibration,
                         threads=args.threads, engine=args.engine, reuse=not args.remeasure, report=report,
                         **({"sensitivity": args.sensitivity} if args.sensitivity else {}))
    end_progress_line()
    return plan
