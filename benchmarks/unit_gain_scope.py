"""Which tensors of an i-quant mix to rescale to unit gain: the evidence behind core/quant/auto.py's
``unit_gain_scope`` (UNIT_GAIN_SCOPES) for the mixes given a measured imatrix.

For each test model (benchmarks/trained_models.py) and i-quant mix, llama.cpp's pipeline given the model's
imatrix (vendored convert_hf_to_gguf.py → F16 → ``llama_model_quantize``) against quantpress given the same
file, four ways: ggml's bytes (``--engine ggml``), every tensor rescaled to unit gain ("all"), only the
tensors of a type far from unit gain ("off-gain", core/quant/auto.OFF_UNIT_GAIN), and what ``auto`` writes
as committed. KL-divergence of each to the model's F32 GGUF on held-out text; Δ = paired difference to
llama.cpp's file over the same tokens, in % of its KLD ± SE. Then auto's files by size, with every step where
a larger file measures worse beyond 2 SE (issue 19 asks the KLD to fall with the size).

    .venv/bin/python -m benchmarks.unit_gain_scope [--models demo,scratch,qwen3,qwen3_896] [--work DIR]

``--work`` keeps the files (and reuses those already there: delete a variant's folder after changing
quantpress); by default they go to a temporary folder.
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
)
from benchmarks.iquants import MIXES
from benchmarks.unit_gain import convert_in_process

VARIANTS = ("ggml", "all", "off-gain", "auto")


def _quantpress(model: Path, mix: str, out: Path, imatrix: Path, variant: str) -> Path:
    """``mix`` given ``imatrix``, written the way ``variant`` says (auto.py's choice replaced for the others)."""
    from quantpress.core.quant import auto

    forced = {"all": auto.GGML_UNIT_GAIN, "off-gain": auto.GGML_UNIT_GAIN_OFF}.get(variant)
    (path,) = convert_in_process(model, [mix], out, imatrix, forced, "ggml" if variant == "ggml" else "auto")
    return path


def measure(name: str, chunks_n: int, n_ctx: int, root: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]:
    """Per-token KLDs [variant][mix] (variant "llama.cpp" too) and auto's file sizes [mix]."""
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.reference import llama_quantize

    from benchmarks.kquants import model_imatrix
    from benchmarks.trained_models import build

    model = build(name, ensure_demo_model())
    imx, imx_path = model_imatrix(model, name)
    means = {n: imx.importance(n) for n in imx.names}
    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    f16, f32 = work / "llama.cpp-F16.gguf", work / f"{model.name}-F32.gguf"
    if not f16.is_file():
        vendor = vendor_dir(SDIST_DIR)
        run_measured([sys.executable, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16",
                      "--outfile", str(f16)], dict(os.environ, PYTHONPATH=str(vendor / "gguf-py")))
    if not f32.is_file():
        run_measured([sys.executable, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", "--out", str(work)])
    chunks = heldout_chunks(model, chunks_n, n_ctx)
    ref = logprobs(f32, chunks)
    klds: dict[str, dict[str, np.ndarray]] = {}
    sizes: dict[str, int] = {}
    for variant in ("llama.cpp", *VARIANTS):
        klds[variant] = {}
        for mix in MIXES:
            path = work / variant / f"{mix}.gguf"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                if variant == "llama.cpp":
                    llama_quantize(f16, path, mix, imatrix=means)
                else:
                    _quantpress(model, mix, work / variant / "tmp", imx_path, variant).rename(path)
            klds[variant][mix] = kld_tokens(ref, logprobs(path, chunks))
            if variant == "auto":
                sizes[mix] = path.stat().st_size
            print(f"{name} {variant} {mix}: KLD {klds[variant][mix].mean():.6g}", file=sys.stderr, flush=True)
    return klds, sizes


def _pct(d: float, se: float, base: float) -> str:
    return f"{100 * d / base:+.1f}% ± {100 * se / base:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="demo,scratch,qwen3,qwen3_896")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--work", type=Path, default=None, help="keep (and reuse) the files here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = args.models.split(",")
    root = args.work or Path(tempfile.mkdtemp(prefix="qp-bench-ugscope-"))
    results = {m: measure(m, args.chunks, args.n_ctx, root) for m in models}
    print(f"Command: `.venv/bin/python -m benchmarks.unit_gain_scope --models {args.models} --chunks {args.chunks} "
          f"--n-ctx {args.n_ctx}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f})\n")
    print("Δ to llama.cpp given the same imatrix (% of its KLD ± SE), per model: ggml's bytes / every tensor at unit "
          "gain / off-gain types only / auto\n")
    print("| mix | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for mix in MIXES:
        cells = []
        for m in models:
            k = results[m][0]
            base = float(k["llama.cpp"][mix].mean())
            cells.append(" / ".join(_pct(*paired(k[v][mix], k["llama.cpp"][mix]), base) for v in VARIANTS))
        print(f"| {mix} | " + " | ".join(cells) + " |")
    print("\nauto's files by size (a step that rises beyond 2 SE marked; llama.cpp's own step beside it):\n")
    for m in models:
        k, sizes = results[m]
        order = sorted(MIXES, key=lambda x: (sizes[x], MIXES.index(x)))
        parts = [f"{order[0]} {k['auto'][order[0]].mean():.3g}"]
        for a, b in zip(order, order[1:], strict=False):
            text = f"{b} {k['auto'][b].mean():.3g}"
            if sizes[b] > sizes[a]:
                d, se = paired(k["auto"][b], k["auto"][a])
                dl, sel = paired(k["llama.cpp"][b], k["llama.cpp"][a])
                if d > 2 * se:
                    text += f" (RISES {d:+.2g} ± {se:.1g}; llama.cpp {dl:+.2g} ± {sel:.1g})"
            else:
                text += " (same size)"
            parts.append(text)
        print(f"- {m}: " + " < ".join(parts))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
