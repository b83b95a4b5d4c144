"""AWQ vs round-to-nearest int4 on the demo model, with the ablation (no scale search / no clip
search): KL-divergence to the original model and perplexity on the held-out text
(resources/eval/heldout.txt, not the calibration text), wall time and peak RSS of each pass.

    .venv/bin/python -m benchmarks.awq [--samples N] [--search-samples N] [--variants awq,rtn,...]
    .venv/bin/python -m benchmarks.awq --gguf Q4_K_M --no-ablation   # "AWQ for GGUF" vs calibrated k-quants
    .venv/bin/python -m benchmarks.awq --kernel                      # int4 backend: kernel vs dense per call

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


def gguf_comparison(model_dir: Path, gguf_type: str, samples: int, seqlen: int, n_chunks: int,
                    n_ctx: int) -> list[tuple[str, float, float, int]]:
    """"AWQ for GGUF" against k-quants with and without an importance matrix, every file written by the
    CLI in its own process. KLD to the F32 GGUF on held-out text with llama.cpp (benchmarks/convert.py's
    helpers). Rows: (label, KLD, wall seconds, peak RSS bytes)."""
    import json
    import sys
    import tempfile

    from quantpress.core.calibration import compute_imatrix, save_imatrix

    from benchmarks.convert import heldout_chunks, kld, logprobs, run_measured

    work = Path(tempfile.mkdtemp(prefix="qp-awq-gguf-"))
    cli = [sys.executable, "-m", "quantpress.core.cli"]
    name = model_dir.name

    def convert(tag: str, *extra: str) -> tuple[Path, float, int]:
        seconds, rss, _ = run_measured([*cli, "convert", str(model_dir), "-f", gguf_type, "--out", str(work / tag),
                                        "--json", *extra])
        return work / tag / f"{name}-{gguf_type}.gguf", seconds, rss

    def awq(tag: str, *extra: str) -> tuple[Path, float, int]:
        seconds, rss, out = run_measured([*cli, "awq", str(model_dir), "--format", f"gguf:{gguf_type}", "--out",
                                          str(work / tag), "--samples", str(samples), "--seqlen", str(seqlen),
                                          "--json", *extra])
        return Path(json.loads(out)["gguf_files"][0]), seconds, rss

    run_measured([*cli, "convert", str(model_dir), "-f", "F32", "--out", str(work), "--json"])
    # The same calibration tokens as the AWQ pass (its first samples x seqlen tokens of the default text).
    same = compute_imatrix(model_dir, n_ctx=seqlen, max_tokens=samples * seqlen)
    save_imatrix(same, work / "same-tokens.imatrix.gguf")
    n = samples * seqlen
    files = [
        (f"{gguf_type}, no calibration", *convert("plain")),
        (f"{gguf_type}, imatrix from the same {n} tokens", *convert("same", "--imatrix",
                                                                     str(work / "same-tokens.imatrix.gguf"))),
        (f"{gguf_type}, --calibration default (the whole default text)", *convert("default", "--calibration",
                                                                                  "default")),
        (f"AWQ scales -> {gguf_type}, imatrix from the same pass ({n} tokens); `quantpress awq` default",
         *awq("awq")),
        (f"AWQ scales + clips (--clip-search) -> {gguf_type}, imatrix from the same pass", *awq("awq-clip",
                                                                                               "--clip-search")),
    ]
    chunks = heldout_chunks(model_dir, n_chunks, n_ctx)
    ref = logprobs(work / f"{name}-F32.gguf", chunks)
    rows = []
    for label, path, seconds, rss in files:
        rows.append((label, kld(ref, logprobs(path, chunks)), seconds, rss))
        print(f"  {label}: KLD {rows[-1][1]:.5f}", flush=True)
    return rows


def print_gguf_table(rows: list[tuple[str, float, float, int]], n_chunks: int, n_ctx: int) -> None:
    base = rows[1][1]  # calibration-aware k-quants on the same tokens
    print(f"\nKLD to the F32 GGUF, llama.cpp, {n_chunks}x{n_ctx} held-out tokens:\n")
    print("| GGUF | KLD to F32 | vs imatrix (same tokens) | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for label, value, seconds, rss in rows:
        print(f"| {label} | {value:.5f} | {(value / base - 1) * 100:+.1f}% | {seconds:.0f} | {rss / 2**20:.0f} |")


def kernel_timing(repeats: int = 5) -> None:
    """The AWQ backend's int4 linear on a demo-model shape (gate_proj: 1536x576, g64), one torch thread:
    torch's int4 CPU kernel in float32 and bfloat16, and the per-call dequantized weight + dense matmul
    the backend uses from DENSE_MIN_ROWS rows on. Median seconds per call."""
    import statistics

    import torch
    from quantpress.core.awq.backend import make_int4_linear
    from quantpress.core.awq.quantizer import quantize

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    q, s, z = quantize(torch.randn(1536, 576, generator=gen), 64)
    lin = make_int4_linear(q, s, z, 64, None)

    def timed(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, 1 thread")
    print("| rows | int4 kernel fp32 ms | int4 kernel bf16 ms | dequantize + dense fp32 ms |")
    print("|---|---|---|---|")
    sz16 = lin.scales_and_zeros.to(torch.bfloat16)
    for rows in (1, 2, 8, 512):
        x = torch.randn(rows, 576, generator=gen)
        x16 = x.to(torch.bfloat16)
        k32 = timed(lambda x=x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, lin.packed, 64, lin.scales_and_zeros))
        k16 = timed(lambda x16=x16: torch.ops.aten._weight_int4pack_mm_for_cpu(x16, lin.packed, 64, sz16))
        dense = timed(lambda x=x: torch.nn.functional.linear(x, lin.dense_weight()))
        print(f"| {rows} | {k32 * 1e3:.2f} | {k16 * 1e3:.2f} | {dense * 1e3:.2f} |")


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
    ap.add_argument("--gguf", metavar="TYPE", help="also compare AWQ for GGUF TYPE (e.g. Q4_K_M) with calibrated k-quants")
    ap.add_argument("--gguf-chunks", type=int, default=4, help="held-out chunks for the GGUF KLD")
    ap.add_argument("--gguf-ctx", type=int, default=512, help="tokens per held-out chunk for the GGUF KLD")
    ap.add_argument("--no-ablation", action="store_true", help="skip the torch ablation (with --gguf)")
    ap.add_argument("--kernel", action="store_true", help="only time the int4 backend's linear (kernel vs dense)")
    args = ap.parse_args()
    if args.kernel:
        kernel_timing()
        return
    from quantpress.core.awq.run import AwqSettings

    samples = args.samples or AwqSettings().samples
    search = args.search_samples or AwqSettings().search_samples
    n_grid = args.n_grid or AwqSettings().n_grid
    model_dir = ensure_demo_model()
    if args.gguf:
        print(f"AWQ for GGUF {args.gguf} on {model_dir.name}, calibration {samples}x{AwqSettings().seqlen} tokens")
        rows = gguf_comparison(model_dir, args.gguf, samples, AwqSettings().seqlen, args.gguf_chunks, args.gguf_ctx)
        print_gguf_table(rows, args.gguf_chunks, args.gguf_ctx)
        if args.no_ablation:
            return
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
