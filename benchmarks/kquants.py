"""Native k-quant / IQ4 kernels vs ggml: error per tensor set and throughput.

    .venv/bin/python -m benchmarks.kquants [--types Q4_K,Q6_K] [--layers 30] [--skip-speed]

Error: for each type, the importance-weighted RMSE sqrt(sum_j imp_j (x - x^)^2 / (rows * sum_j imp_j))
of every tensor, summed over a tensor set, native / ggml (ratio < 1 = native is better).
- "plain": both quantize without importance; the error is the plain RMSE (imp = 1).
- "imp": both get the same importance vector; the error is weighted by it.
Tensor sets: "demo" = every 2-D weight of the demo model (SmolLM2-135M) whose row length is a
multiple of the type's block size (256-blocks: only mlp.down_proj, 1536 columns), and "gen" = a
generated model (8 matrices of 1024 x 2048 and 2048 x 1024, Gaussian rows with random row scales,
0.2% outliers x8 and Student-t tails), all rows multiples of 256.
Importance: synthetic but realistic: per column, mean x^2 of 128 heavy-tailed activations
(Student-t, 3 dof, times a log-normal per-column scale), one vector per input width (seeded).
ggml = ggml_quantize_chunk from llama-cpp-python's bundled ggml, with the same importance.
Speed: MB/s of float32 input on a 512 x 2048 generated matrix, best of 3, single thread and all
threads (ggml's all-thread figure splits rows over a thread pool, as quantpress.core.quant does).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
from quantpress import native
from quantpress.core.quant import _ggml_threaded
from quantpress.core.quant.ggml_ref import ggml_quantize, ggml_type

KTYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]


def importance_for(width: int) -> np.ndarray:
    rng = np.random.default_rng(width)
    act = rng.standard_t(3, size=(128, width)) * rng.lognormal(0.0, 1.0, size=width)
    return np.mean(act**2, axis=0).astype(np.float32)


def generated_model(seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for i in range(8):
        shape = (1024, 2048) if i % 2 == 0 else (2048, 1024)
        x = rng.standard_normal(shape).astype(np.float32)
        if i % 4 == 3:
            x = rng.standard_t(4, size=shape).astype(np.float32)
        x *= rng.lognormal(-4.0, 0.3, size=(shape[0], 1)).astype(np.float32)
        x[rng.random(shape) < 0.002] *= 8
        yield f"gen.{i}", np.ascontiguousarray(x)


def demo_model(layers: int) -> Iterator[tuple[str, np.ndarray]]:
    from quantpress.core.demo import ensure_demo_model
    from safetensors.numpy import safe_open

    path = ensure_demo_model() / "model.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        for name in f.keys():
            parts = name.split(".")
            if len(f.get_slice(name).get_shape()) != 2:
                continue
            if "layers" in parts and int(parts[parts.index("layers") + 1]) >= layers:
                continue
            yield name, np.ascontiguousarray(f.get_tensor(name).astype(np.float32))


def weighted_rmse(x: np.ndarray, y: np.ndarray, imp: np.ndarray) -> float:
    err = ((y - x) ** 2).sum(axis=0, dtype=np.float64)
    return float(np.sqrt((err * imp).sum() / (imp.sum() * x.shape[0])))


def error_sums(qtype: str, tensors: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Summed weighted RMSE over the tensors that fit the block size, native and ggml, both modes."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    block = ggml_type(qtype).block_size
    gtype = GGMLQuantizationType[qtype]
    sums = {"n": 0.0, "plain_native": 0.0, "plain_ggml": 0.0, "imp_native": 0.0, "imp_ggml": 0.0}
    for _, x in tensors:
        if x.shape[1] % block:
            continue
        sums["n"] += 1
        ones = np.ones(x.shape[1], np.float32)
        imp = importance_for(x.shape[1])
        for mode, q_imp, w in (("plain", None, ones), ("imp", imp, imp)):
            ours = native.dequantize(native.quantize(x, qtype, q_imp), qtype, x.shape[1])
            ref = dequantize(_ggml_threaded(x, qtype, q_imp, 0), gtype).reshape(x.shape)
            sums[f"{mode}_native"] += weighted_rmse(x, ours, w)
            sums[f"{mode}_ggml"] += weighted_rmse(x, ref, w)
    return sums


def best_mb_s(fn: Callable[[], object], n_bytes: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best / 1e6


def speeds(qtype: str) -> dict[str, float]:
    x = next(generated_model(seed=1))[1][:512]
    imp = importance_for(x.shape[1])
    return {
        "native_1t": best_mb_s(lambda: native.quantize(x, qtype, threads=1), x.nbytes),
        "ggml_1t": best_mb_s(lambda: ggml_quantize(x, qtype), x.nbytes),
        "native_1t_imp": best_mb_s(lambda: native.quantize(x, qtype, imp, threads=1), x.nbytes),
        "ggml_1t_imp": best_mb_s(lambda: ggml_quantize(x, qtype, imp), x.nbytes),
        "native_all": best_mb_s(lambda: native.quantize(x, qtype, threads=0), x.nbytes),
        "ggml_all": best_mb_s(lambda: _ggml_threaded(x, qtype, None, 0), x.nbytes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=",".join(KTYPES))
    ap.add_argument("--layers", type=int, default=30, help="demo-model layers to include (all = 30)")
    ap.add_argument("--sets", default="demo,gen")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    types = args.types.split(",")
    sets = {}
    if "demo" in args.sets:
        sets["demo"] = list(demo_model(args.layers))
    if "gen" in args.sets:
        sets["gen"] = list(generated_model())
    print(f"SIMD {native.build_info()['simd']}, {os.cpu_count()} threads; ratios are native / ggml")
    print("\n| type | set | tensors | plain RMSE ratio | importance-weighted RMSE ratio |")
    print("|---|---|---|---|---|")
    for qtype in types:
        for set_name, tensors in sets.items():
            s = error_sums(qtype, tensors)
            if not s["n"]:
                continue
            print(f"| {qtype} | {set_name} | {int(s['n'])} | {s['plain_native'] / s['plain_ggml']:.4f} "
                  f"| {s['imp_native'] / s['imp_ggml']:.4f} |", flush=True)
    if args.skip_speed:
        return
    print("\n| type | native 1T | ggml 1T | ratio | native 1T imp | ggml 1T imp | ratio | native all-T | ggml all-T | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for qtype in types:
        r = speeds(qtype)
        print(f"| {qtype} | {r['native_1t']:.0f} | {r['ggml_1t']:.0f} | {r['native_1t'] / r['ggml_1t']:.2f}x "
              f"| {r['native_1t_imp']:.0f} | {r['ggml_1t_imp']:.0f} | {r['native_1t_imp'] / r['ggml_1t_imp']:.2f}x "
              f"| {r['native_all']:.0f} | {r['ggml_all']:.0f} | {r['native_all'] / r['ggml_all']:.2f}x |", flush=True)
    print("(MB/s of float32 input, 512 x 2048 generated matrix)")


if __name__ == "__main__":
    main()
