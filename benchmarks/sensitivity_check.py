"""How right is the per-tensor sensitivity the types chosen for a target rely on (issue 20)?

For each tensor of a test model (or those matching ``--tensors``): a GGUF where that tensor alone is
stored as ``--type`` and every other tensor stays F32, its KL-divergence to the all-F32 GGUF on
held-out text (llama.cpp's runtime, paired per token), against the loss the planner predicts for that
choice (core/gguf/best_fit.py: measured importance-weighted error times the sensitivity) with each
sensitivity source: ``weights`` (core/calibration/sensitivity.py, no text) and ``fisher``
(core/calibration/fisher.py, a pass over the built-in calibration text). The planner needs their
ratios between tensors right, not their absolute size: the summary is the spread of log10(predicted /
measured) over the tensors and the rank correlation.

Also the residual stream's energy entering each block (Σ over channels of the mean square, the R_l
of core/calibration/sensitivity.py) as the weights estimate propagates it and as the model really has
it on the held-out text (transformers, float32): the weights estimate divides a block's noise by it.

    .venv/bin/python -m benchmarks.sensitivity_check --model qwen3 --type Q3_K
    .venv/bin/python -m benchmarks.sensitivity_check --model finetuned_far --type IQ4_NL --tensors '^(token_embd|blk\\.(0|9|19|29)\\.)'
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.convert import heldout_chunks, kld_tokens, logprobs  # noqa: E402
from benchmarks.trained_models import DESCRIPTIONS  # noqa: E402


def single_tensor_klds(model_dir: Path, qtype: str, pattern: str | None, work: Path, chunks: int,
                       n_ctx: int) -> dict[str, tuple[float, float]]:
    """Tensor name -> (mean KLD, its standard error) of the file with that tensor alone at ``qtype``."""
    from quantpress.core.gguf import layout
    from quantpress.core.gguf.best_fit import candidates_for
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import (
        MIXED_FORMAT,
        OutputPlan,
        output_metadata,
        plan_conversion,
        source_metadata,
    )
    from quantpress.core.inspect import open_model

    base = plan_conversion(open_model(str(model_dir)), ["Q8_0"], None)
    kv = output_metadata(base, MIXED_FORMAT, source_metadata(base))
    metadata = layout.encode_metadata(kv)

    def write(types: dict[str, str], path: Path) -> Path:
        head, total = layout.encode_preamble(metadata, len(kv), [(t.name, t.shape, types[t.name]) for t in base.tensors])
        convert(dataclasses.replace(base, outputs=(OutputPlan(str(path), MIXED_FORMAT, types, int(total), len(head)),)))
        return path

    f32 = {t.name: "F32" for t in base.tensors}
    wanted = re.compile(pattern) if pattern else None
    names = [t.name for t in base.tensors if qtype in candidates_for(t.name, tuple(t.shape))
             and (wanted is None or wanted.search(t.name))]
    held = heldout_chunks(model_dir, chunks, n_ctx)
    ref = logprobs(write(f32, work / "f32.gguf"), held)
    out = {}
    for name in names:
        k = kld_tokens(ref, logprobs(write({**f32, name: qtype}, work / "one.gguf"), held))
        out[name] = (float(k.mean()), float(k.std() / np.sqrt(len(k))))
        print(f"  {name}: {out[name][0]:.3e}", file=sys.stderr, flush=True)
    return out


def predicted(model_dir: Path, qtype: str, names: list[str], sensitivity: str) -> dict[str, float]:
    """The planner's expected loss of ``qtype`` for each tensor with that sensitivity source."""
    from quantpress.core.gguf.best_fit import _measure
    from quantpress.core.gguf.plan import plan_conversion, source_metadata
    from quantpress.core.inspect import open_model
    from quantpress.core.jobs import NEVER, ignore

    base = plan_conversion(open_model(str(model_dir)), ["Q8_0"], None)
    errors, source, _, _ = _measure(base, {n: (qtype,) for n in names}, source_metadata(base), 0, sensitivity,
                                    ignore, NEVER)
    if source != sensitivity:
        raise RuntimeError(f"sensitivity '{sensitivity}' is not available for {model_dir}")
    return {n: float(errors[n].loss[qtype]) for n in names}


def residual_energies(model_dir: Path, chunks: int, n_ctx: int) -> tuple[list[float], list[float]]:
    """(weights estimate, measured) residual energy entering each block's attention: Σ over channels
    of the mean square; measured = the median over the held-out tokens (transformers, float32)."""
    import torch
    from quantpress.core.calibration.weights import weight_importance
    from quantpress.core.gguf.convert import _checked_slabs, _open_reader
    from quantpress.core.gguf.plan import plan_conversion, source_metadata
    from quantpress.core.inspect import open_model
    from transformers import AutoModelForCausalLM

    base = plan_conversion(open_model(str(model_dir)), ["Q8_0"], None)
    reader = _open_reader(base)
    trace: dict[str, np.ndarray] = {}
    try:
        weight_importance(base.tensors, lambda t: _checked_slabs(reader, t), source_metadata(base), base.gguf_arch,
                          trace=trace)
    finally:
        reader.close()
    n_layers = sum(1 for k in trace if k.endswith(".resid_attn"))
    estimated = [float(trace[f"blk.{i}.resid_attn"].sum()) for i in range(n_layers)]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    model.eval()
    per_layer: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
    with torch.no_grad():
        for ids in heldout_chunks(model_dir, chunks, n_ctx):
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for i in range(n_layers):
                per_layer[i].append((hidden[i][0].double() ** 2).sum(-1).numpy())
    return estimated, [float(np.median(np.concatenate(e))) for e in per_layer]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen3", choices=list(DESCRIPTIONS))
    ap.add_argument("--type", default="Q3_K", help="the type each tensor is stored as alone (one of best_fit's candidates)")
    ap.add_argument("--tensors", default=None, help="a regular expression: only the tensors it matches")
    ap.add_argument("--sensitivities", default="weights,fisher")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model

    from benchmarks.trained_models import build as build_test_model

    model = build_test_model(args.model, ensure_demo_model())
    with tempfile.TemporaryDirectory(prefix="qp-bench-sens-") as tmp:
        measured = single_tensor_klds(model, args.type, args.tensors, Path(tmp), args.chunks, args.n_ctx)
    names = list(measured)
    sources = args.sensitivities.split(",")
    preds = {s: predicted(model, args.type, names, s) for s in sources}
    print(f"Model '{args.model}' ({DESCRIPTIONS[args.model]}); each tensor alone at {args.type}, the rest F32; "
          f"KLD to the F32 GGUF on {args.chunks}x{args.n_ctx} held-out tokens.\n")
    print("| tensor | measured KLD ± SE | " + " | ".join(f"{s}: predicted (ratio)" for s in sources) + " |")
    print("|---|---|" + "---|" * len(sources))
    for n in names:
        m, se = measured[n]
        cells = [f"{preds[s][n]:.2e} ({preds[s][n] / max(m, 1e-30):.3g})" for s in sources]
        print(f"| {n} | {m:.2e} ± {se:.0e} | " + " | ".join(cells) + " |")
    m = np.array([measured[n][0] for n in names])
    print("\n| sensitivity | log10(predicted/measured): mean | sd | min | max | rank correlation |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in sources:
        p = np.array([preds[s][n] for n in names])
        r = np.log10(np.maximum(p, 1e-30) / np.maximum(m, 1e-30))
        print(f"| {s} | {r.mean():+.2f} | {r.std():.2f} | {r.min():+.2f} | {r.max():+.2f} | {spearman(p, m):.2f} |")
    estimated, real = residual_energies(model, args.chunks, args.n_ctx)
    print("\n| block | residual energy entering it: weights estimate | measured (median over tokens) | ratio |")
    print("|---:|---:|---:|---:|")
    for i, (e, r) in enumerate(zip(estimated, real, strict=True)):
        print(f"| {i} | {e:.3g} | {r:.3g} | {r / max(e, 1e-30):.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
