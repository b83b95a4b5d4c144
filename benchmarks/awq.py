"""AWQ vs round-to-nearest int4 on the demo model, with the ablation (no scale search / no clip
search): KL-divergence to the original model and perplexity on the held-out text
(resources/eval/heldout.txt, not the calibration text), wall time and peak RSS of each pass.

    .venv/bin/python -m benchmarks.awq [--samples N] [--search-samples N] [--variants awq,rtn,...]

Every variant runs the same pass (core/awq/run.py) with the same per-layer group sizes (g128 where
the width allows, g64 for the 576-wide inputs) and the same quantizer, so the packing is identical;
the dequantized weights are what the compressed-tensors loader produces (checked by the tests).
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Any

VARIANTS = {  # name -> (scale_search, clip_search)
    "rtn": (False, False),
    "awq": (True, True),
    "awq-no-scale": (False, True),
    "awq-no-clip": (True, False),
}


def run_all(model_dir: Path, samples: int, search: int, group_size: int, n_grid: int) -> tuple[dict[str, dict[str, Any]], float]:
    """One AWQ pass producing every ablation variant from the same capture and scale search."""
    from quantpress.core.awq.quantizer import dequantize
    from quantpress.core.awq.run import AwqSettings, plan_awq, run_awq

    settings = AwqSettings(group_size=group_size, samples=samples, search_samples=search, n_grid=n_grid)
    plan = plan_awq(model_dir, settings)
    states: dict[str, dict[str, Any]] = {v: {} for v in VARIANTS}

    def ablation(_i: int, variants: dict[str, Any]) -> None:
        for name, (quantized, floats) in variants.items():
            states[name].update(floats)
            for module, (q, s, z, gs) in quantized.items():
                states[name][module + ".weight"] = dequantize(q, s, z, gs)

    t0 = time.monotonic()
    run_awq(plan, lambda *a: None, ablation=ablation,
            report=lambda p: print(f"\r  {p.message[:60]:60s}", end="", flush=True))
    print()
    return states, time.monotonic() - t0


def time_single_pass(model_dir: Path, samples: int, search: int, group_size: int, n_grid: int) -> tuple[float, int]:
    """Wall time and peak RSS of the plain AWQ pass + compressed-tensors writer (``quantpress awq``
    default path), in a fresh process so the RSS is the pass's own."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "awq"
        code = ("import json,sys; from quantpress.core.awq.pipeline import awq_convert; "
                "from quantpress.core.awq.run import AwqSettings; "
                f"r = awq_convert({str(model_dir)!r}, {str(out)!r}, settings=AwqSettings(group_size={group_size}, "
                f"samples={samples}, search_samples={search}, n_grid={n_grid})); print(json.dumps([r.seconds, r.peak_rss_bytes]))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, rss = json.loads(res.stdout.strip().splitlines()[-1])
        return float(seconds), int(rss)


def heldout_ids(model_dir: Path, n_ctx: int, max_chunks: int) -> Any:
    import torch
    from transformers import AutoTokenizer

    text = resources.files("quantpress.resources").joinpath("eval", "heldout.txt").read_text(encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    n = min(max_chunks, len(ids) // n_ctx)
    return torch.tensor(ids[: n * n_ctx]).reshape(n, n_ctx)


def logprobs(model: Any, ids: Any) -> Any:
    import torch

    with torch.no_grad():  # float32 keeps 16 chunks x 512 x 49152 at 1.6 GB
        return torch.cat([torch.log_softmax(model(row[None]).logits[0].float(), -1) for row in ids])


def score(ref_lp: Any, lp: Any, ids: Any) -> tuple[float, float]:
    """(mean KL(ref || model) per token, perplexity) over all positions that predict a next token."""
    import math

    n_ctx = ids.shape[1]
    keep = [i for i in range(ref_lp.shape[0]) if (i % n_ctx) != n_ctx - 1]
    r, m = ref_lp[keep], lp[keep]
    kld = float((r.double().exp() * (r.double() - m.double())).sum(-1).mean())
    targets = ids.reshape(-1)[[i + 1 for i in keep]]
    nll = -float(m.gather(1, targets[:, None]).double().mean())
    return kld, math.exp(nll)


def main() -> None:
    import torch
    from quantpress.core.demo import ensure_demo_model
    from transformers import AutoModelForCausalLM

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--search-samples", type=int, default=None)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--variants", default="rtn,awq,awq-no-scale,awq-no-clip")
    ap.add_argument("--eval-chunks", type=int, default=16)
    ap.add_argument("--n-grid", type=int, default=None)
    ap.add_argument("--no-timing", action="store_true", help="skip the separate timed run of the plain pass")
    args = ap.parse_args()
    from quantpress.core.awq.run import AwqSettings

    samples = args.samples or AwqSettings().samples
    search = args.search_samples or AwqSettings().search_samples
    n_grid = args.n_grid or AwqSettings().n_grid
    model_dir = ensure_demo_model()
    ids = heldout_ids(model_dir, 512, args.eval_chunks)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    ref = logprobs(model, ids)
    _, ppl0 = score(ref, ref, ids)
    print(f"demo model {model_dir.name}; held-out {ids.numel()} tokens; calibration {samples}x512 tokens, "
          f"search on {search} rows, grid {n_grid}; original perplexity {ppl0:.3f}")
    states, seconds = run_all(model_dir, samples, search, args.group_size, n_grid)
    print(f"ablation pass (all four variants, one capture and search): {seconds:.0f} s")
    rows = []
    for name in args.variants.split(","):
        model.load_state_dict({**original, **states.pop(name)}, strict=True)
        kld, ppl = score(ref, logprobs(model, ids), ids)
        rows.append((name, kld, ppl))
        print(f"  {name:<13} KLD {kld:.5f}  PPL {ppl:.3f}", flush=True)
    timing = None if args.no_timing else time_single_pass(model_dir, samples, search, args.group_size, n_grid)
    base = {r[0]: r for r in rows}.get("rtn")
    print("\n| variant | scale search | clip search | KLD to original | vs RTN | perplexity |")
    print("|---|---|---|---|---|---|")
    for name, kld, ppl in rows:
        rel = f"{(kld / base[1] - 1) * 100:+.1f}%" if base else "-"
        sc, cl = ("yes" if f else "no" for f in VARIANTS[name])
        print(f"| {name} | {sc} | {cl} | {kld:.5f} | {rel} | {ppl:.3f} |")
    print(f"| original (fp32) | - | - | 0 | - | {ppl0:.3f} |")
    if timing is not None:
        print(f"\nquantpress awq (compressed-tensors, same settings) on the demo model: {timing[0]:.0f} s wall, "
              f"peak RSS {timing[1] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
