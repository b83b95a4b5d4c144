"""GGUF i-quant mixes (IQ1_S ... IQ3_M): quantpress vs llama.cpp's pipeline given the same imatrix.

llama.cpp pipeline = its convert_hf_to_gguf.py (from the llama-cpp-python sdist) to F16, then
``llama_model_quantize`` with the model's imatrix from the default calibration text (the one cached by
benchmarks/kquants.py). quantpress = ``quantpress convert --imatrix`` with that same file (one pass, all
mixes), and its default (importance estimated from the weights, no text). KL-divergence to the model's
F32 GGUF per token on held-out text (resources/eval/heldout.txt), and one greedy chat reply per quantpress
file (every mix must load and answer in llama-cpp-python).

    .venv/bin/python -m benchmarks.iquants [--model demo|scratch|finetuned] [--chunks 4] [--write]

Checks printed under the table: ratio = KLD quantpress+imatrix / KLD llama.cpp+imatrix ≤ 1.02 for every
mix, and the quantpress+imatrix KLD falls as the file grows (mixes sorted by size).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.convert import (
    SDIST_DIR,
    heldout_chunks,
    kld_tokens,
    logprobs,
    paired,
    run_measured,
    vendor_dir,
    write_section,
)
from benchmarks.trained_models import DESCRIPTIONS

MIXES = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"]
RATIO_LIMIT = 1.02
PROMPT = "What is the capital of France?"


def chat_reply(path: Path) -> str:
    """One greedy reply through quantpress's chat session (llama-cpp-python)."""
    from quantpress.core.chat import ChatSession, ChatSettings

    session = ChatSession.load(path, ChatSettings(temperature=0.0, seed=1, max_tokens=16, ctx_tokens=512, threads=2))
    try:
        return session.send(PROMPT).text.strip().replace("\n", " ").replace("|", "/")
    finally:
        session.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo", choices=list(DESCRIPTIONS))
    ap.add_argument("--formats", default=",".join(MIXES))
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--no-default", action="store_true",
                    help="skip the default (weights-estimate) files; the reply then comes from the +imatrix file")
    ap.add_argument("--ggml-default", action="store_true",
                    help="also make the default files with --engine ggml (ggml's bytes given the weights estimate, "
                         "no unit gain) and pair the default against them")
    ap.add_argument("--write", action="store_true", help="replace this model's section of BENCHMARKS.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.reference import llama_quantize

    from benchmarks.kquants import model_imatrix
    from benchmarks.trained_models import build as build_test_model

    formats = args.formats.split(",")
    model = build_test_model(args.model, ensure_demo_model())
    work = Path(tempfile.mkdtemp(prefix="qp-bench-iq-"))
    py = sys.executable
    imx, imx_path = model_imatrix(model, args.model)
    means = {n: imx.importance(n) for n in imx.names}
    vendor = vendor_dir(SDIST_DIR)
    run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16", "--outfile",
                  str(work / "ref-F16.gguf")], dict(os.environ, PYTHONPATH=str(vendor / "gguf-py")))
    cli = [py, "-m", "quantpress.core.cli", "convert", str(model), "--json"]
    fmt_args = [a for f in formats for a in ("-f", f)]
    t_im, _, _ = run_measured(cli + ["--imatrix", str(imx_path), "--out", str(work / "im")] + fmt_args)
    t_w = 0.0 if args.no_default else run_measured(cli + ["--out", str(work / "w")] + fmt_args)[0]
    if args.ggml_default and not args.no_default:
        run_measured(cli + ["--engine", "ggml", "--out", str(work / "wg")] + fmt_args)
    run_measured(cli + ["-f", "F32", "--out", str(work)])
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", chunks)
    rows: dict[str, dict[str, float | str]] = {}
    per_token: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # mix -> (llama.cpp, quantpress+imatrix) KLDs
    for fmt in formats:
        t0 = time.monotonic()
        llama_quantize(work / "ref-F16.gguf", work / f"ref-{fmt}.gguf", fmt, imatrix=means)
        t_ref = time.monotonic() - t0
        k_ref = kld_tokens(ref, logprobs(work / f"ref-{fmt}.gguf", chunks))
        ours = work / "im" / f"{model.name}-{fmt}.gguf"
        k_im = kld_tokens(ref, logprobs(ours, chunks))
        default = ours if args.no_default else work / "w" / f"{model.name}-{fmt}.gguf"
        k_w = np.full(1, np.nan) if args.no_default else kld_tokens(ref, logprobs(default, chunks))
        d, se = paired(k_im, k_ref)
        per_token[fmt] = (k_ref, k_im)
        ggml_default: dict[str, float] = {}
        if args.ggml_default and not args.no_default:
            k_g = kld_tokens(ref, logprobs(work / "wg" / f"{model.name}-{fmt}.gguf", chunks))
            dg, seg = paired(k_w, k_g)
            ggml_default = {"g": float(k_g.mean()), "dg": dg, "seg": seg}
        np.savez(work / "kld_tokens.npz", **{f"{m}-{w}": a[i] for m, a in per_token.items()
                                             for i, w in enumerate(("llama", "ours"))})
        rows[fmt] = {"bytes": ours.stat().st_size, "ref_bytes": (work / f"ref-{fmt}.gguf").stat().st_size,
                     "ref": float(k_ref.mean()), "im": float(k_im.mean()), "w": float(k_w.mean()), "d": d, "se": se,
                     "ref_s": t_ref, "reply": chat_reply(default)[:48], **ggml_default}
        print(f"{fmt}: llama.cpp {rows[fmt]['ref']:.4f} quantpress+imatrix {rows[fmt]['im']:.4f} "
              f"weights {rows[fmt]['w']:.4f}", file=sys.stderr, flush=True)
    report = render(rows, formats, args, imx.n_tokens, t_im, t_w) + size_steps(rows, per_token)
    print(report)
    if args.write:
        write_section(report)


def size_steps(rows: dict[str, dict[str, float | str]], per_token: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Each step up in file size: the paired KLD change per token (larger file − smaller) ± SE, for both
    pipelines: whether a rise is beyond noise (|Δ| > 2 SE) or not."""
    order = sorted(per_token, key=lambda f: float(rows[f]["bytes"]))
    lines = ["| size step | Δ KLD llama.cpp ± SE | Δ KLD quantpress ± SE |", "|---|---|---|"]
    for a, b in zip(order, order[1:], strict=False):
        cells = []
        for i in (0, 1):
            d, se = paired(per_token[b][i], per_token[a][i])
            cells.append(f"{kld_text(d, '+')} ± {kld_text(se)}" + (" (rise > 2 SE)" if d > 2 * se else ""))
        lines.append(f"| {a} → {b} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def kld_text(value: float | str, sign: str = "") -> str:
    """A KLD: 4 decimals, or 3 significant digits below 0.01 (the small models' values)."""
    v = float(value)
    return f"{v:{sign}.4f}" if abs(v) >= 0.01 or v == 0 else f"{v:{sign}.2e}"


def render(rows: dict[str, dict[str, float | str]], formats: list[str], args: argparse.Namespace, n_tokens: int,
           t_im: float, t_w: float) -> str:
    mib = 2**20
    order = sorted(formats, key=lambda f: float(rows[f]["bytes"]))
    flags = ("" if args.model == "demo" else f" --model {args.model}") + (" --ggml-default" if args.ggml_default else "")
    extra = all("g" in rows[f] for f in formats)
    lines = [f"### GGUF i-quants, model '{args.model}'", "",
             f"Model: {DESCRIPTIONS[args.model]}. llama.cpp = vendored convert_hf_to_gguf.py → F16, then "
             f"llama_model_quantize with the model's imatrix (default calibration text, {n_tokens} tokens); "
             "quantpress+imatrix = `quantpress convert --imatrix` with the same file; quantpress default = no text "
             "(importance estimated from the weights). KLD = mean KL-divergence to the F32 GGUF per token on "
             f"held-out text ({args.chunks}×{args.n_ctx} tokens of resources/eval/heldout.txt). ratio = quantpress"
             f"+imatrix / llama.cpp+imatrix (limit {RATIO_LIMIT}); Δ = paired difference ± SE. reply = the greedy "
             f"answer of the quantpress {'+imatrix' if args.no_default else 'default'} file to \"{PROMPT}\" (16 tokens) through quantpress's chat.", "",
             f"Command: `.venv/bin/python -m benchmarks.iquants{flags} --formats {','.join(formats)}"
             f"{' --no-default' if args.no_default else ''} --chunks {args.chunks} --n-ctx {args.n_ctx} "
             f"--write` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
             f"{os.getloadavg()[0]:.1f}); quantpress passes over all {len(formats)} mixes: {t_im:.0f} s with the "
             f"imatrix, {t_w:.0f} s default.", "",
             "| mix | MiB (quantpress / llama.cpp) | KLD llama.cpp+imatrix | KLD quantpress+imatrix | ratio | Δ ± SE | "
             "KLD quantpress default |" + (" default with --engine ggml | Δ default − ggml ± SE |" if extra else "")
             + " reply |",
             "|---|---|---|---|---|---|---|" + ("---|---|" if extra else "") + "---|"]
    for f in order:
        r = rows[f]
        ratio = float(r["im"]) / max(float(r["ref"]), 1e-12)
        more = f"{kld_text(r['g'])} | {kld_text(r['dg'], '+')} ± {kld_text(r['seg'])} | " if extra else ""
        lines.append(f"| {f} | {float(r['bytes']) / mib:.2f} / {float(r['ref_bytes']) / mib:.2f} | {kld_text(r['ref'])} | "
                     f"{kld_text(r['im'])} | {ratio:.3f} | {kld_text(r['d'], '+')} ± {kld_text(r['se'])} | "
                     f"{kld_text(r['w'])} | {more}{r['reply']} |")
    over = [f for f in order if float(rows[f]["im"]) > RATIO_LIMIT * float(rows[f]["ref"])]
    kl = [float(rows[f]["im"]) for f in order]
    rises = [f"{a} → {b}" for a, b, x, y in zip(order, order[1:], kl, kl[1:], strict=False) if y > x]
    lines += ["", f"Ratio above {RATIO_LIMIT}: {', '.join(over) or 'none'}. Where the KLD rises although the file "
              f"grows (quantpress+imatrix, by size): {', '.join(rises) or 'nowhere'}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
