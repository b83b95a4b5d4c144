"""Unit gain for the i-quant mixes: the evidence behind core/quant/auto.py's ``GGML_UNIT_GAIN`` rows.

For each test model (benchmarks/trained_models.py) and i-quant mix, four files from the same source
weights, all by ggml's quantizer: given the model's imatrix (default calibration text) or the weights
estimate (the converter's default), each stored as ggml writes it (``--engine ggml``: llama-quantize's
bytes for that importance) and rescaled to unit gain (core/quant/unit_gain.py; forced for every mix here,
whatever auto.py says). KL-divergence of each to the model's F32 GGUF on held-out text; Δ = unit − ggml,
paired over the same tokens, ± its standard error. A first table gives each quantized type's gain as ggml
stores it, ``<q, w> / <w, w>`` (unweighted, median over the model's tensors of that type, from the imatrix
files).

    .venv/bin/python -m benchmarks.unit_gain [--models demo,scratch,qwen3] [--formats IQ1_S,...] [--chunks 4]

Prints, per importance source and mix, whether unit gain was no worse than ggml's bytes (Δ ≤ 2 SE) on every
model and better on average. (auto.py's rule is against llama.cpp's own pipeline, `benchmarks.iquants`,
which quantizes from its converter's F16 file: on the demo, whose source is F32, that alone moves the KLD
by up to 2.5 SE.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.convert import heldout_chunks, kld_tokens, logprobs, paired, run_measured
from benchmarks.iquants import MIXES, kld_text

if TYPE_CHECKING:
    from quantpress.core.quant.auto import QuantChoice

SOURCES = ("imatrix", "weights")


def convert_in_process(model: Path, formats: list[str], out: Path, imatrix: Path | None,
                       choice: QuantChoice | None, engine: str = "auto") -> list[Path]:
    """quantpress convert with ``engine``, every mix of ``formats`` quantized as ``choice`` (a
    QuantChoice put in core/quant/auto.py's table for both importance sources, the table restored
    after; None: auto.py's own choices). The written files."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.inspect import open_model
    from quantpress.core.quant import auto

    saved = dict(auto.AUTO)
    try:
        if choice is not None:
            auto.AUTO.update({m: {"weights": choice, "measured": choice} for m in formats})
        out.mkdir(parents=True, exist_ok=True)
        results = convert(plan_conversion(open_model(model), formats, out, imatrix=imatrix, engine=engine))
    finally:
        auto.AUTO.clear()
        auto.AUTO.update(saved)
    return [Path(r.output) for r in results]


def type_gains(f32: Path, files: list[Path]) -> dict[str, float]:
    """Median gain <q, w> / <w, w> per quantized type over the tensors of ``files`` against ``f32``."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    from quantpress.core.gguf.reader import open_gguf

    gains: dict[str, list[float]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    with open_gguf(f32) as ref:
        for path in files:
            with open_gguf(path) as g:
                for t in g.tensors:
                    if t.ggml_type in ("F32", "F16", "BF16") or (t.name, t.ggml_type) in seen:
                        continue
                    seen.add((t.name, t.ggml_type))
                    w = np.asarray(ref.raw(t.name), dtype=np.float64).ravel()
                    q = dequantize(np.asarray(g.raw(t.name)), GGMLQuantizationType[t.ggml_type]).astype(np.float64).ravel()
                    gains[t.ggml_type].append(float(q @ w / (w @ w)))
    return {ty: float(np.median(v)) for ty, v in sorted(gains.items())}


def measure(name: str, formats: list[str], chunks_n: int, n_ctx: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.quant import auto

    from benchmarks.kquants import model_imatrix
    from benchmarks.trained_models import build

    model = build(name, ensure_demo_model())
    _, imx_path = model_imatrix(model, name)
    work = Path(tempfile.mkdtemp(prefix=f"qp-bench-unitgain-{name}-"))
    run_measured([sys.executable, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", "--out", str(work)])
    f32 = work / f"{model.name}-F32.gguf"
    chunks = heldout_chunks(model, chunks_n, n_ctx)
    ref = logprobs(f32, chunks)
    rows: dict[str, dict[str, float]] = {}
    for source in SOURCES:
        imatrix = imx_path if source == "imatrix" else None
        for unit in (False, True):
            convert_in_process(model, formats, work / f"{source}-{'unit' if unit else 'ggml'}", imatrix,
                               auto.GGML_UNIT_GAIN if unit else None, "auto" if unit else "ggml")
        for fmt in formats:
            k = {v: kld_tokens(ref, logprobs(work / f"{source}-{v}" / f"{model.name}-{fmt}.gguf", chunks))
                 for v in ("ggml", "unit")}
            d, se = paired(k["unit"], k["ggml"])
            rows[f"{source}/{fmt}"] = {"ggml": float(k["ggml"].mean()), "unit": float(k["unit"].mean()), "d": d, "se": se}
            print(f"{name} {source} {fmt}: ggml {rows[f'{source}/{fmt}']['ggml']:.6g} unit "
                  f"{rows[f'{source}/{fmt}']['unit']:.6g} ({d:+.3g} ± {se:.2g})", file=sys.stderr, flush=True)
    gains = type_gains(f32, [work / "imatrix-ggml" / f"{model.name}-{f}.gguf" for f in formats])
    return rows, gains


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="demo,scratch,qwen3")
    ap.add_argument("--formats", default=",".join(MIXES))
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    formats = args.formats.split(",")
    models = args.models.split(",")
    results = {m: measure(m, formats, args.chunks, args.n_ctx) for m in models}
    print(f"Command: `.venv/bin/python -m benchmarks.unit_gain --models {args.models} --formats {args.formats} "
          f"--chunks {args.chunks} --n-ctx {args.n_ctx}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f})\n")
    types = sorted({t for _, g in results.values() for t in g})
    print("| type | " + " | ".join(f"gain on {m}" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    for t in types:
        print(f"| {t} | " + " | ".join(f"{results[m][1][t]:.4f}" if t in results[m][1] else "–" for m in models) + " |")
    for source in SOURCES:
        print(f"\n{source}: KLD ggml's bytes → unit gain (Δ ± SE)\n")
        print("| mix | " + " | ".join(models) + " | unit gain no worse on every model, better on average |")
        print("|---|" + "---|" * (len(models) + 1))
        for fmt in formats:
            cells, ok, rel = [], True, []
            for m in models:
                r = results[m][0][f"{source}/{fmt}"]
                cells.append(f"{kld_text(r['ggml'])} → {kld_text(r['unit'])} ({kld_text(r['d'], '+')} ± {kld_text(r['se'])})")
                ok &= r["d"] <= 2 * r["se"]
                rel.append(r["d"] / max(r["ggml"], 1e-12))
            verdict = "yes" if ok and float(np.mean(rel)) < 0 else "no"
            print(f"| {fmt} | " + " | ".join(cells) + f" | {verdict} ({float(np.mean(rel)):+.1%}) |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
