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
Importance ("imp" columns): on "demo", by default the real one: the demo model's imatrix from the
default calibration text (compute_imatrix defaults, ~33k tokens; cached under the temp folder, see
demo_imatrix), per tensor; tensors without an imatrix entry (token_embd) are left out of the "imp"
column. ``--demo-importance synthetic`` uses the synthetic vectors instead. On "gen" (no model to
run) it is always synthetic but realistic: per column, mean x^2 of 128 heavy-tailed activations
(Student-t, 3 dof, times a log-normal per-column scale), one vector per input width (seeded).
ggml = ggml_quantize_chunk from llama-cpp-python's bundled ggml, with the same importance.
Speed: MB/s of float32 input on a 512 x 2048 generated matrix, best of 3, single thread and all
threads (ggml's all-thread figure splits rows over a thread pool, as quantpress.core.quant does);
for single-thread calls also the ratio of the calling thread's CPU time (best of 5), steadier than
wall time on a shared machine, and for the native all-thread call its CPU time / wall time (how
many cores it got). ``--sets none`` runs only the speed part.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from quantpress import native
from quantpress.core.quant import _ggml_threaded
from quantpress.core.quant.ggml_ref import ggml_init, ggml_quantize, ggml_type

KTYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]


def importance_for(width: int) -> np.ndarray:
    rng = np.random.default_rng(width)
    act = rng.standard_t(3, size=(128, width)) * rng.lognormal(0.0, 1.0, size=width)
    return np.mean(act**2, axis=0).astype(np.float32)


def demo_imatrix() -> tuple[Any, Path]:
    """The demo model's imatrix (see model_imatrix)."""
    from quantpress.core.demo import ensure_demo_model

    return model_imatrix(ensure_demo_model(), "demo")


def model_imatrix(model: Path, label: str) -> tuple[Any, Path]:
    """A model's imatrix from the default calibration text (compute_imatrix defaults), and the
    llama.cpp GGUF file it is cached in: computing it takes minutes, so it is reused across runs
    (keyed by the weights' and the text's size/mtime; delete the file to recompute)."""
    from quantpress.core.calibration import compute_imatrix, load_imatrix, save_imatrix
    from quantpress.core.calibration.text import default_calibration_text

    st = (model / "model.safetensors").stat()
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{default_calibration_text()}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "quantpress-bench" / f"{label}-imatrix-{key}.gguf"
    if path.is_file():
        return load_imatrix(path), path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"computing the {label} model's imatrix (default calibration text) -> {path}", flush=True)
    imx = compute_imatrix(model)
    save_imatrix(imx, path)  # atomic: an interrupted run leaves no half file
    return imx, path


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


# HF -> GGUF tensor names of the demo model's (llama) linears, the keys of its imatrix.
_GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def gguf_name(hf_name: str) -> str | None:
    """``model.layers.3.mlp.down_proj.weight`` -> ``blk.3.ffn_down.weight`` (None if not a linear)."""
    parts = hf_name.split(".")
    if "layers" not in parts:
        return None
    i = parts.index("layers")
    short = _GGUF_NAMES.get(".".join(parts[i + 2:-1]))
    return f"blk.{parts[i + 1]}.{short}.weight" if short else None


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


Tensor = tuple[str, np.ndarray, "np.ndarray | None"]  # name, weights, importance (None: no "imp" entry)


def with_importance(tensors: Iterator[tuple[str, np.ndarray]], imatrix: Any = None) -> list[Tensor]:
    """Attach importance: the imatrix's vector for the tensor if given, else the synthetic one."""
    out: list[Tensor] = []
    for name, x in tensors:
        if imatrix is None:
            imp = importance_for(x.shape[1])
        else:
            g = gguf_name(name)
            imp = None if g is None else imatrix.importance(g)
            imp = None if imp is None else np.ascontiguousarray(imp, dtype=np.float32)
        out.append((name, x, imp))
    return out


def error_sums(qtype: str, tensors: list[Tensor]) -> dict[str, float]:
    """Summed weighted RMSE over the tensors that fit the block size, native and ggml, both modes."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    block = ggml_type(qtype).block_size
    gtype = GGMLQuantizationType[qtype]
    sums = {"n": 0.0, "n_imp": 0.0, "plain_native": 0.0, "plain_ggml": 0.0, "imp_native": 0.0, "imp_ggml": 0.0}
    for _, x, imp in tensors:
        if x.shape[1] % block:
            continue
        sums["n"] += 1
        sums["n_imp"] += imp is not None
        ones = np.ones(x.shape[1], np.float32)
        modes = [("plain", None, ones)] + ([("imp", imp, imp)] if imp is not None else [])
        for mode, q_imp, w in modes:
            ours = native.dequantize(native.quantize(x, qtype, q_imp), qtype, x.shape[1])
            ref = dequantize(_ggml_threaded(x, qtype, q_imp, 0), gtype).reshape(x.shape)
            sums[f"{mode}_native"] += weighted_rmse(x, ours, w)
            sums[f"{mode}_ggml"] += weighted_rmse(x, ref, w)
    return sums


def best_mb_s(fn: Callable[[], object], n_bytes: int, repeat: int = 3) -> float:
    return timed(fn, n_bytes, repeat)[0]


def timed(fn: Callable[[], object], n_bytes: int, repeat: int = 3) -> tuple[float, float]:
    """Best MB/s (wall clock) and, for that run, process CPU seconds / wall seconds: how many cores
    the call kept busy. On a loaded machine the wall figure of a threaded call is capped by the CPU
    share the scheduler gives it; CPU/wall shows whether the threads did run in parallel."""
    best, busy = float("inf"), 0.0
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, busy = wall, cpu / wall
    return n_bytes / best / 1e6, busy


def best_cpu_s(fn: Callable[[], object], repeat: int = 5) -> float:
    """Least CPU seconds of the calling thread over ``repeat`` calls (single-threaded calls only):
    unlike wall time it does not count the time other processes hold the core."""
    best = float("inf")
    for _ in range(repeat):
        c0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - c0)
    return best


def speeds(qtype: str) -> dict[str, float]:
    x = next(generated_model(seed=1))[1][:512]
    imp = importance_for(x.shape[1])
    ggml_init(qtype)
    one = {"native_1t": lambda: native.quantize(x, qtype, threads=1), "ggml_1t": lambda: ggml_quantize(x, qtype),
           "native_1t_imp": lambda: native.quantize(x, qtype, imp, threads=1),
           "ggml_1t_imp": lambda: ggml_quantize(x, qtype, imp)}
    r = {k: best_mb_s(fn, x.nbytes) for k, fn in one.items()}
    r.update({f"{k}_cpu": best_cpu_s(fn) for k, fn in one.items()})
    r["native_all"], r["native_all_busy"] = timed(lambda: native.quantize(x, qtype, threads=0), x.nbytes)
    r["ggml_all"] = best_mb_s(lambda: _ggml_threaded(x, qtype, None, 0), x.nbytes)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=",".join(KTYPES))
    ap.add_argument("--layers", type=int, default=30, help="demo-model layers to include (all = 30)")
    ap.add_argument("--sets", default="demo,gen")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--demo-importance", choices=["real", "synthetic"], default="real",
                    help="demo set: the model's imatrix from the default calibration text (cached) or synthetic")
    args = ap.parse_args()
    types = args.types.split(",")
    sets = {}
    if "demo" in args.sets:
        imatrix = demo_imatrix()[0] if args.demo_importance == "real" else None
        sets["demo"] = with_importance(demo_model(args.layers), imatrix)
    if "gen" in args.sets:
        sets["gen"] = with_importance(generated_model())
    print(f"SIMD {native.build_info()['simd']}, {os.cpu_count()} threads; ratios are native / ggml; "
          f"demo importance: {args.demo_importance}, gen importance: synthetic")
    print("\n| type | set | tensors (plain / imp) | plain RMSE ratio | importance-weighted RMSE ratio |")
    print("|---|---|---|---|---|")
    for qtype in types:
        for set_name, tensors in sets.items():
            s = error_sums(qtype, tensors)
            if not s["n"]:
                continue
            imp_ratio = s["imp_native"] / s["imp_ggml"] if s["n_imp"] else float("nan")
            print(f"| {qtype} | {set_name} | {int(s['n'])} / {int(s['n_imp'])} | "
                  f"{s['plain_native'] / s['plain_ggml']:.4f} | {imp_ratio:.4f} |", flush=True)
    if args.skip_speed:
        return
    print("\n| type | native 1T | ggml 1T | ratio | CPU-time ratio | native 1T imp | ggml 1T imp | ratio | CPU-time ratio "
          "| native all-T | ggml all-T | ratio | native all-T CPU/wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for qtype in types:
        r = speeds(qtype)
        print(f"| {qtype} | {r['native_1t']:.0f} | {r['ggml_1t']:.0f} | {r['native_1t'] / r['ggml_1t']:.2f}x "
              f"| {r['ggml_1t_cpu'] / r['native_1t_cpu']:.2f}x "
              f"| {r['native_1t_imp']:.0f} | {r['ggml_1t_imp']:.0f} | {r['native_1t_imp'] / r['ggml_1t_imp']:.2f}x "
              f"| {r['ggml_1t_imp_cpu'] / r['native_1t_imp_cpu']:.2f}x "
              f"| {r['native_all']:.0f} | {r['ggml_all']:.0f} | {r['native_all'] / r['ggml_all']:.2f}x "
              f"| {r['native_all_busy']:.2f} |", flush=True)
    print(f"(MB/s of float32 input (wall clock, best of 3), 512 x 2048 generated matrix; CPU-time ratio = ggml / "
          f"native thread CPU seconds, best of 5; all-T = {os.cpu_count()} threads; CPU/wall = cores kept busy by "
          "the native all-thread call)")


if __name__ == "__main__":
    main()
