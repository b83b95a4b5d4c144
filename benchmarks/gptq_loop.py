"""GPTQ's quantization loop on one decoder layer of the demo model's shapes: the blocked (lazy-batch) loop
against its column-by-column twin, same random weights and Hessians (from correlated random inputs).

    .venv/bin/python -m benchmarks.gptq_loop [--threads 2]

Prints wall and CPU seconds per linear and the layer's total (×30 layers ≈ the demo's quantization time,
without the calibration forward passes); levels may differ only where the float summation order flips a rounding tie.
"""

from __future__ import annotations

import argparse
import os
import time

SHAPES = {"q_proj": (576, 576), "k_proj": (192, 576), "v_proj": (192, 576), "o_proj": (576, 576),
          "gate_proj": (1536, 576), "up_proj": (1536, 576), "down_proj": (576, 1536)}


def main() -> None:
    import torch
    from quantpress.core.hfquant.gptq import gptq, gptq_ref

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print("| linear | N × K | blocked wall s | blocked CPU s | reference wall s | reference CPU s | levels differing |")
    print("|---|---|---|---|---|---|---|")
    total = [0.0] * 4
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k, generator=g) * 0.05
        x = torch.randn(2048, k, generator=g) @ (torch.randn(k, k, generator=g) / 16)
        h = 2 * x.T @ x / x.shape[0]
        cells, outs = [], []
        for fn in (gptq, gptq_ref):
            t, c = time.perf_counter(), time.process_time()
            outs.append(fn(w, h, 64))
            cells += [time.perf_counter() - t, time.process_time() - c]
        total = [a + b for a, b in zip(total, cells, strict=True)]
        differing = int((outs[0][0] != outs[1][0]).sum())  # float summation order can flip a tie
        print(f"| {name} | {n} × {k} | " + " | ".join(f"{v:.2f}" for v in cells) + f" | {differing} of {n * k} |")
    print("| layer | | " + " | ".join(f"{v:.2f}" for v in total) + " | |")


if __name__ == "__main__":
    main()
