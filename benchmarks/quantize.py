"""Native legacy quantizers vs ggml's: throughput (MB/s of float32 input) and byte identity.

    .venv/bin/python -m benchmarks.quantize [--rows 2048] [--cols 2048] [--repeat 5] [--types Q8_0,Q4_0]

Input: a synthetic heavy-tailed float32 matrix (Gaussian, 0.2% outliers x8), the same for both.
"ggml" is ``ggml_quantize_chunk`` from llama-cpp-python's bundled ggml (single call = one thread;
the all-thread figure splits rows over a thread pool, as quantpress.core.quant does).
Each number is the best of --repeat runs (the machine is shared; best-of filters out noise).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from quantpress import native
from quantpress.core.quant import _ggml_threaded
from quantpress.core.quant.ggml_ref import ggml_quantize

LEGACY = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def synthetic(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    x[rng.random((rows, cols)) < 0.002] *= 8
    return x


def best_mb_s(fn: Callable[[], object], n_bytes: int, repeat: int) -> float:
    fn()  # warm up (page faults, ggml table init)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best / 1e6


def run(types: list[str], rows: int, cols: int, repeat: int) -> list[dict[str, object]]:
    x = synthetic(rows, cols)
    imp = np.mean(np.random.default_rng(1).standard_t(3, size=(64, cols)) ** 2, axis=0).astype(np.float32)
    n_threads = os.cpu_count() or 1
    results = []
    for qtype in types:
        same = np.array_equal(native.quantize(x, qtype), ggml_quantize(x, qtype))
        same_imp = np.array_equal(native.quantize(x, qtype, imp), ggml_quantize(x, qtype, imp))
        results.append({
            "type": qtype,
            "native_1t": best_mb_s(lambda q=qtype: native.quantize(x, q, threads=1), x.nbytes, repeat),
            "ggml_1t": best_mb_s(lambda q=qtype: ggml_quantize(x, q), x.nbytes, repeat),
            "native_all": best_mb_s(lambda q=qtype: native.quantize(x, q, threads=0), x.nbytes, repeat),
            "ggml_all": best_mb_s(lambda q=qtype: _ggml_threaded(x, q, None, 0), x.nbytes, repeat),
            "identical": same and same_imp,
            "threads": n_threads,
        })
    return results


def table(results: list[dict[str, object]]) -> str:
    head = ("| type | native 1T MB/s | ggml 1T MB/s | 1T ratio | native all-T MB/s | ggml all-T MB/s "
            "| all-T ratio | bytes == ggml (plain & importance) |")
    lines = [head, "|" + "---|" * 8]
    for r in results:
        n1, g1, na, ga = (float(r[k]) for k in ("native_1t", "ggml_1t", "native_all", "ggml_all"))  # type: ignore[arg-type]
        lines.append(f"| {r['type']} | {n1:.0f} | {g1:.0f} | {n1 / g1:.2f}x | {na:.0f} | {ga:.0f} | "
                     f"{na / ga:.2f}x | {'yes' if r['identical'] else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--types", default=",".join(LEGACY))
    args = ap.parse_args()
    results = run(args.types.split(","), args.rows, args.cols, args.repeat)
    print(f"input {args.rows}x{args.cols} float32 ({args.rows * args.cols * 4 / 1e6:.0f} MB), "
          f"{results[0]['threads']} threads, SIMD {native.build_info()['simd']}")
    print(table(results))


if __name__ == "__main__":
    main()
