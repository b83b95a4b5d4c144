"""End quality of the native k-quant kernels: KL-divergence of the demo model converted with each engine.

    .venv/bin/python -m benchmarks.kquants_kld [--formats Q4_K_M,Q3_K_M] [--chunks 8] [--n-ctx 512]

The demo model (SmolLM2-135M-Instruct) is converted with quantpress's converter (``core`` plan +
convert API, policy quantpress) once per engine, without and with the imatrix of the default
calibration text (the same cached matrix as ``benchmarks.kquants``, given to every engine):
- "ggml": ggml's quantizer for every tensor (``engine="ggml"``, llama.cpp's bytes);
- "native": quantpress's kernels wherever they exist (``engine="native"``);
- "ggml+native k-quants": ggml for the legacy fallback types (Q4_0..Q8_0) and native only for the
  k-quant/IQ4 types, so the k-quant kernels alone are compared (the demo model's 576-wide rows
  fall back to legacy types; only the 1536-wide ffn_down rows and the like get k-quants).
Every variant of a format has the same tensor types, so the same file size (checked). KLD to the F32
GGUF on held-out text (resources/eval/heldout.txt, never the calibration text), F32 KV cache,
with the helpers of ``benchmarks.convert``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.convert import heldout_chunks, kld, logprobs
from benchmarks.kquants import KTYPES, demo_imatrix


@contextlib.contextmanager
def kquants_only_native() -> Iterator[None]:
    """engine="auto" with the ENGINES table cut to the k-quant/IQ4 types (legacy types -> ggml)."""
    from quantpress.core import quant

    saved = quant.ENGINES
    quant.ENGINES = {k: v for k, v in saved.items() if k in KTYPES}
    try:
        yield
    finally:
        quant.ENGINES = saved


VARIANTS = {"ggml": ("ggml", contextlib.nullcontext), "native": ("native", contextlib.nullcontext),
            "ggml+native k-quants": ("auto", kquants_only_native)}


def convert_one(model_dir: Path, fmt: str, out: Path, engine: str, imatrix: Path | None) -> Path:
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    plan = plan_conversion(open_source(model_dir), [fmt], out, imatrix=imatrix, engine=engine)
    convert(plan)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default="Q4_K_M,Q3_K_M")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--n-ctx", type=int, default=512)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model

    model = ensure_demo_model()
    imx, imx_path = demo_imatrix()
    work = Path(tempfile.mkdtemp(prefix="qp-kld-"))
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(convert_one(model, "F32", work / "F32.gguf", "auto", None), chunks)
    print(f"demo model, KLD to F32 on {len(chunks)}x{args.n_ctx} held-out tokens; imatrix: default calibration "
          f"text, {imx.n_tokens} tokens\n")
    print("| format | imatrix | engine | file bytes | KLD | KLD / ggml |")
    print("|---|---|---|---|---|---|")
    for fmt in args.formats.split(","):
        for im in (None, imx_path):
            base = None
            sizes = set()
            for label, (engine, ctx) in VARIANTS.items():
                path = work / f"{fmt}-{'im' if im else 'plain'}-{engine}-{len(label)}.gguf"
                with ctx():
                    convert_one(model, fmt, path, engine, im)
                sizes.add(path.stat().st_size)
                d = kld(ref, logprobs(path, chunks))
                base = d if base is None else base
                print(f"| {fmt} | {'yes' if im else 'no'} | {label} | {path.stat().st_size:,} | {d:.5f} | "
                      f"{d / base:.3f} |", flush=True)
                path.unlink()
            if len(sizes) != 1:
                raise RuntimeError(f"{fmt}: the engines wrote different file sizes {sizes}")


if __name__ == "__main__":
    main()
