"""Which departures from llama-quantize win on every test model: the evidence behind "auto".

For each test model (benchmarks/trained_models.py: the demo, whose weights lie on a Q4_1 grid, and two
whose weights were never quantized) and each GGUF mix, the KL-divergence to the model's own F32 GGUF on
held-out text of llama.cpp's pipeline (its converter → F16 → llama_model_quantize, no imatrix) and of
quantpress variants, each as a paired difference to llama.cpp over the same tokens ± its standard error:

- ``native+weights``: native kernels, importance estimated from the weights (the default before this study)
- ``native+none``: native kernels, plain rounding (``--calibration none``)
- ``ggml+weights``: ggml's quantizer given the weights-estimated importance
- ``ggml+none``: ggml's quantizer without importance, quantpress's fallbacks (Q2_K/Q3_K → IQ4_NL)
- ``nativemag+…``: native kernels whose error weight also grows with the weight's magnitude
  (SearchParams.magnitude: ggml's k-quant weighting, importance × sqrt(σ² + x²))
- ``…+imatrix``: given the model's imatrix from the default calibration text, compared with llama.cpp
  given the same matrix

    .venv/bin/pip install -q -e . --no-deps -Ccmake.define.QUANTPRESS_BENCH_HOOKS=ON   # the tuning hook
                                                        # (not needed for --variants auto,auto+imatrix)
    .venv/bin/python -m benchmarks.auto_choice [--models demo,finetuned,scratch] [--chunks 4] [--out results.json]

Prints one table per model and, per mix, the variants that are not worse than llama.cpp (Δ ≤ 2 SE)
on every model; results.json keeps every number. core/quant/auto.py holds the decisions taken from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.convert import (
    ALL,
    SDIST_DIR,
    heldout_chunks,
    kld_tokens,
    logprobs,
    paired,
    run_measured,
    vendor_dir,
)

# name -> (convert flags, native search parameters set first). "{imatrix}" is the model's imatrix file
# (default calibration text); "+imatrix" variants are compared with llama.cpp given the same matrix.
# The kernels' objective is set explicitly either way: "native" = plain squared error (the kernels
# before this study), "nativemag" = ggml's magnitude weighting (today's default).
PLAIN = {"magnitude": 0}
MAGNITUDE = {"magnitude": 1}
VARIANTS: dict[str, tuple[list[str], dict[str, int]]] = {
    "native+weights": (["--engine", "native", "--calibration", "weights"], PLAIN),
    "native+none": (["--engine", "native", "--calibration", "none"], PLAIN),
    "ggml+weights": (["--engine", "ggml", "--calibration", "weights"], {}),
    "ggml+none": (["--engine", "ggml", "--calibration", "none"], {}),
    "nativemag+weights": (["--engine", "native", "--calibration", "weights"], MAGNITUDE),
    "nativemag+none": (["--engine", "native", "--calibration", "none"], MAGNITUDE),
    "native+imatrix": (["--engine", "native", "--imatrix", "{imatrix}"], PLAIN),
    "ggml+imatrix": (["--engine", "ggml", "--imatrix", "{imatrix}"], {}),
    "nativemag+imatrix": (["--engine", "native", "--imatrix", "{imatrix}"], MAGNITUDE),
    # What a user gets: the converter's defaults (engine "auto", core/quant/auto.py), measured directly
    # rather than inferred from the variant the table names.
    "auto": ([], {}),
    "auto+imatrix": (["--imatrix", "{imatrix}"], {}),
    "auto+none": (["--calibration", "none"], {}),  # what `--calibration none` writes, against llama.cpp without one
}


def convert_cmd(model: Path, out: Path, flags: list[str], params: dict[str, int], formats: list[str]) -> list[str]:
    """``quantpress convert`` in a fresh interpreter, with native search parameters set first."""
    argv = ["convert", str(model), "--out", str(out), "--json", *flags, *[a for f in formats for a in ("-f", f)]]
    # variants that set no search parameters ("auto") run on a normal build, without the tuning hook
    hook = (f"from quantpress import native; native._set_search_params({params!r}, False); "
            f"native._set_search_params({params!r}, True); ") if params else ""
    code = f"import sys; {hook}from quantpress.core.cli import main; sys.exit(main({argv!r}))"
    return [sys.executable, "-c", code]


def study(model: Path, label: str, formats: list[str], variants: list[str], chunks: int, n_ctx: int,
          work: Path) -> dict[str, dict[str, dict[str, float]]]:
    """results[format][variant] = {kld, delta, se, bytes}; "llama.cpp" / "llama.cpp+imatrix" are the references."""
    from quantpress.core.gguf.reference import llama_quantize

    from benchmarks.kquants import model_imatrix

    py = sys.executable
    vendor = vendor_dir(SDIST_DIR)
    env = dict(os.environ, PYTHONPATH=str(vendor / "gguf-py"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "ref-F16.gguf").exists():
        run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16",
                      "--outfile", str(work / "ref-F16.gguf")], env)
    if not (work / f"{model.name}-F32.gguf").exists():
        run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", "--out", str(work), "--json"])
    imx, imx_path = model_imatrix(model, label)
    means = {n: imx.importance(n) for n in imx.names}
    held = heldout_chunks(model, chunks, n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", held)
    for name in variants:  # outputs of an earlier run of the same code are reused (--fresh: start over)
        if all((work / name / f"{model.name}-{fmt}.gguf").exists() for fmt in formats):
            continue
        flags, params = VARIANTS[name]
        run_measured(convert_cmd(model, work / name, [f.format(imatrix=imx_path) for f in flags], params, formats))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for fmt in formats:
        row: dict[str, dict[str, float]] = {}
        k_refs = {}
        for ref_name, im in (("llama.cpp", None), ("llama.cpp+imatrix", means)):
            ref_path = work / ("ref-F16.gguf" if fmt == "F16" else f"{ref_name}-{fmt}.gguf")
            if not ref_path.exists():  # written aside: an interrupted run leaves no half file to reuse
                llama_quantize(work / "ref-F16.gguf", ref_path.with_suffix(".part"), fmt, imatrix=im)
                ref_path.with_suffix(".part").replace(ref_path)
            k_refs[ref_name] = kld_tokens(ref, logprobs(ref_path, held))
            _save_tokens(work, ref_name, fmt, k_refs[ref_name])
            row[ref_name] = {"kld": float(k_refs[ref_name].mean()), "delta": 0.0, "se": 0.0,
                             "bytes": ref_path.stat().st_size}
        for name in variants:
            path = work / name / f"{model.name}-{fmt}.gguf"
            k = kld_tokens(ref, logprobs(path, held))
            _save_tokens(work, name, fmt, k)
            d, se = paired(k, k_refs["llama.cpp+imatrix" if name.endswith("+imatrix") else "llama.cpp"])
            row[name] = {"kld": float(k.mean()), "delta": d, "se": se, "bytes": path.stat().st_size}
        results[fmt] = row
        print(f"  {fmt}: " + ", ".join(f"{v} {r['kld']:.4f}" for v, r in row.items()), file=sys.stderr, flush=True)
    return results


def _save_tokens(work: Path, variant: str, fmt: str, k: np.ndarray) -> None:
    """Per-token KLDs, kept so that two mixes can be compared paired over the same tokens."""
    (work / "kld").mkdir(exist_ok=True)
    np.save(work / "kld" / f"{variant}-{fmt}.npy", k)


def _delta(r: dict[str, float], base: float) -> str:
    """Δ ± SE as a percentage of the reference's KLD (the test models' KLDs differ by 1000x)."""
    if base <= 0:
        return f"{r['delta']:+.2g} ± {r['se']:.2g}"
    return f"{100 * r['delta'] / base:+.1f}% ± {100 * r['se'] / base:.1f}%"


def render(all_results: dict[str, dict[str, dict[str, dict[str, float]]]], variants: list[str]) -> str:
    lines = []
    for model, results in all_results.items():
        lines += [f"#### {model}", "", "| format | MiB | KLD llama.cpp | KLD llama.cpp+imatrix | "
                  + " | ".join(f"{v} Δ ± SE" for v in variants) + " |", "|---|---|---|---|" + "---|" * len(variants)]
        for fmt, row in sorted(results.items(), key=lambda kv: kv[1]["llama.cpp"]["bytes"]):
            cells = []
            for v in variants:
                r = row[v]
                mark = " (worse)" if r["delta"] > 2 * r["se"] else " (better)" if r["delta"] < -2 * r["se"] else ""
                base = row["llama.cpp+imatrix" if v.endswith("+imatrix") else "llama.cpp"]["kld"]
                cells.append(_delta(r, base) + mark)
            lines.append(f"| {fmt} | {row['llama.cpp']['bytes'] / 2**20:.1f} | {row['llama.cpp']['kld']:.3g} | "
                         f"{row['llama.cpp+imatrix']['kld']:.3g} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Not worse than llama.cpp on every model (Δ ≤ 2 SE), per format (the +imatrix variants against "
              "llama.cpp given the same imatrix):", ""]
    formats = next(iter(all_results.values())).keys()
    for fmt in formats:
        ok = [v for v in variants if all(res[fmt][v]["delta"] <= 2 * res[fmt][v]["se"] for res in all_results.values())]
        better = [v for v in ok if all(res[fmt][v]["delta"] < -2 * res[fmt][v]["se"] for res in all_results.values())]
        lines.append(f"- {fmt}: not worse: {', '.join(ok) or 'none'}; better everywhere: {', '.join(better) or 'none'}")
    return "\n".join(lines) + "\n"


def default_variant(mix: str, kind: str, measured: dict[str, dict[str, float]], native: str) -> str:
    """The measured variant whose bytes core/quant/auto.py writes for ``mix`` (``kind``: "weights", the
    converter's default, or "default", given the default calibration text's imatrix); ``native``: the
    variant name prefix of today's native kernels."""
    from quantpress.core.quant.auto import choose

    direct = "auto+imatrix" if kind == "default" else "auto"
    if direct in measured:
        return direct
    how = choose("auto", mix, kind)
    suffix = "imatrix" if kind == "default" else ("weights" if how.importance else "none")
    name = f"{native if how.engine == 'native' else 'ggml'}+{suffix}"
    # ggml without importance / with the measured imatrix is llama.cpp's own pipeline, except where
    # quantpress's fallback policy differs (Q2_K/Q3_K rows not a multiple of 256): measured apart
    if name == "ggml+none" or name == "ggml+imatrix":
        return name if name in measured else "llama.cpp" if name == "ggml+none" else "llama.cpp+imatrix"
    return name


def auto_rows(all_results: dict[str, dict[str, dict[str, dict[str, float]]]], native: str) -> str:
    """What core/quant/auto.py chose, per model and mix, with its measured Δ to llama.cpp."""

    def variant(mix: str, kind: str, measured: dict[str, dict[str, float]]) -> str:
        return default_variant(mix, kind, measured, native)

    models = list(all_results)
    lines = ["| format | " + " | ".join(f"{m}: default Δ ± SE | {m}: +imatrix Δ ± SE" for m in models) + " | worse |",
             "|---|" + "---|---|" * len(models) + "---|"]
    for fmt in next(iter(all_results.values())):
        cells, worse = [], []
        for m in models:
            for kind in ("weights", "default"):
                v = variant(fmt, kind, all_results[m][fmt])
                r = all_results[m][fmt].get(v)
                if r is None:
                    cells.append(f"({v}: not measured)")
                    continue
                base = all_results[m][fmt]["llama.cpp+imatrix" if kind == "default" else "llama.cpp"]["kld"]
                cells.append(f"{v} {_delta(r, base)}")
                if r["delta"] > 2 * r["se"]:
                    worse.append(f"{m} {'imatrix' if kind == 'default' else 'default'}")
        lines.append(f"| {fmt} | " + " | ".join(cells) + f" | {', '.join(worse)} |")
    return "\n".join(lines) + "\n"


K_MIXES = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")


def size_order(all_results: dict[str, dict[str, dict[str, dict[str, float]]]], native: str,
               work: Path) -> tuple[str, list[str]]:
    """The k-quant mixes of each model as the default writes them, by file size, and each neighbour pair
    where the larger file's KLD is higher. Neighbours are compared paired over the same tokens (per-token
    KLDs under WORK/<model>/kld): "worse" when higher by more than 2 SE, "tie" within 2 SE."""
    lines, breaks = [], []
    for kind in ("weights", "default"):
        label = "default" if kind == "weights" else "+imatrix"
        for m, res in all_results.items():
            rows = []
            for mix in K_MIXES:
                if mix not in res:
                    continue
                v = default_variant(mix, kind, res[mix], native)
                if v not in res[mix]:  # that importance source was not measured in this run
                    continue
                rows.append((res[mix][v]["bytes"], res[mix][v]["kld"], mix, work / m / "kld" / f"{v}-{mix}.npy"))
            rows.sort()
            lines.append(f"- {m} ({label}): " + " < ".join(f"{mix} {b / 2**20:.1f} MiB {k:.3g}" for b, k, mix, _ in rows))
            best = None  # the lowest-KLD file among the next smaller size
            for i, (b1, k1, m1, f1) in enumerate(rows):
                if i and rows[i - 1][0] == b1:  # the same types on this model (Q2_K and Q3_K_S, 576-wide rows)
                    lines.append(f"  ({rows[i - 1][2]} and {m1}: the same size, {b1} bytes: no size step)")
                if best is not None and k1 >= best[1]:
                    b0, k0, m0, f0 = best
                    verdict = "higher"
                    if f0.exists() and f1.exists():
                        d, se = paired(np.load(f1), np.load(f0))
                        verdict = f"worse by {d:.3g} ± {se:.2g}" if d > 2 * se else f"tie ({d:+.2g} ± {se:.2g})"
                    breaks.append(f"{m} ({label}): {m1} ({b1 / 2**20:.1f} MiB, {k1:.3g}) vs {m0} "
                                  f"({b0 / 2**20:.1f} MiB, {k0:.3g}): {verdict}")
                if i + 1 < len(rows) and rows[i + 1][0] != b1:
                    best = min((r for r in rows if r[0] == b1), key=lambda r: r[1])
    return "\n".join(lines) + "\n", breaks


# Candidates per importance source, as (variant measured, core/quant/auto.py constant); the reference
# (llama.cpp's behaviour, Δ = 0 by construction) is the fallback when none is not worse everywhere.
CANDIDATES = {
    "weights": [("nativemag+weights", "NATIVE"), ("ggml+weights", "GGML_WITH_IMPORTANCE")],
    "none": [("nativemag+none", "NATIVE_PLAIN")],
    "measured": [("nativemag+imatrix", "NATIVE")],
}
REFERENCE = {"weights": "LLAMA_CPP", "none": "LLAMA_CPP", "measured": "GGML_WITH_IMPORTANCE"}


def decide(all_results: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, str]]:
    """Per mix and source: among the candidates not worse than llama.cpp (Δ ≤ 2 SE) on every model and
    better on average (mean relative Δ below zero), the one whose worst model is closest to llama.cpp
    (lowest maximum relative Δ: "never worse" matters more than the average gain); else the reference."""
    out: dict[str, dict[str, str]] = {}
    for fmt in next(iter(all_results.values())):
        for source, cands in CANDIDATES.items():
            best, best_score = REFERENCE[source], 0.0
            for variant, const in cands:
                rows = [res[fmt].get(variant) for res in all_results.values()]
                if any(r is None or r["delta"] > 2 * r["se"] for r in rows):
                    continue
                ref = "llama.cpp+imatrix" if source == "measured" else "llama.cpp"
                bases = [res[fmt][ref]["kld"] for res in all_results.values()]
                rel = [r["delta"] / b for r, b in zip(rows, bases, strict=True) if b > 0] or [0.0]
                if float(np.mean(rel)) < 0 and (best == REFERENCE[source] or max(rel) < best_score):
                    best, best_score = const, max(rel)
            out.setdefault(fmt, {})[source] = best
    return out


def main() -> None:
    from quantpress import native

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="demo,finetuned,scratch")
    ap.add_argument("--formats", default=",".join(ALL))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "qp-auto-choice.json")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qp-auto",
                    help="files per model under WORK/<model>; existing outputs are reused")
    ap.add_argument("--fresh", action="store_true", help="delete WORK/<model> first")
    ap.add_argument("--native", default="nativemag", help="variant prefix of today's native kernels")
    ap.add_argument("--report-only", action="store_true", help="render --out's numbers again, measure nothing")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model

    from benchmarks.trained_models import build

    variants = args.variants.split(",")
    if any(VARIANTS[v][1] for v in variants) and not hasattr(native, "_set_search_params"):
        sys.exit("these variants need the native tuning hook: .venv/bin/pip install -q -e . --no-deps "
                 "-Ccmake.define.QUANTPRESS_BENCH_HOOKS=ON (and a plain reinstall afterwards); "
                 "'auto' and 'auto+imatrix' run without it")
    formats = args.formats.split(",")
    all_results = json.loads(args.out.read_text()) if args.report_only else {}
    for name in [] if args.report_only else args.models.split(","):
        model = build(name, ensure_demo_model())
        print(f"{name}: {model}", file=sys.stderr, flush=True)
        if args.fresh:
            shutil.rmtree(args.work / name, ignore_errors=True)
        all_results[name] = study(model, name, formats, variants, args.chunks, args.n_ctx, args.work / name)
        args.out.write_text(json.dumps(all_results, indent=1))
    print(render(all_results, variants))
    print(auto_rows(all_results, args.native))
    order, breaks = size_order(all_results, args.native, args.work)
    print("K-quant mixes by file size, KLD as the default writes them:\n\n" + order)
    print("Larger file, KLD not lower:" + "".join(f"\n- {b}" for b in breaks) if breaks else "Larger file, KLD not lower: none")
    print("decide():", json.dumps(decide(all_results), indent=1))
    print(f"(numbers: {args.out})")


if __name__ == "__main__":
    main()
