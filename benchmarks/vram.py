"""Claim (issue 17): with every layer on an NVIDIA GPU, the VRAM estimate is never below the measured
use and, once the GPU is probed, within 10% of it.

    .venv/bin/python -m benchmarks.vram [--work DIR] [--contexts 4096 32768] [--no-probe]

Model: issue 17's generated 1.2B llama (hidden 2048, 16 layers, FFN 8192, 32/8 heads, vocab 49,152,
tied embeddings, bf16; benchmarks/generated_model.py CONFIG_1B2) converted by quantpress to Q4_K_M and
Q8_0 with ``--calibration none``. Reference = the measurement: a fresh process loads the file with
``Llama(n_ctx, n_gpu_layers=-1)`` (n_batch 512) and evaluates 512 tokens while this process samples
NVML's "used" figure; peak minus "used" before the process started (core/gpu_probe.py
``measure_gpu_use``). Predicted = llama.cpp's device buffers (model, KV, compute: the estimator's
terms) + the runtime overhead: the old 300 MiB guess (the issue's table), the CUDA default
(unmeasured) and the probed value (``quantpress doctor --gpu-probe``, run first unless --no-probe).
llama.cpp's own logged buffer sizes are printed beside the estimator's terms.

Without an NVIDIA GPU (no NVML) it says so and exits 0; with a CPU build of llama-cpp-python it
says so and exits 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024**2
OLD_GUESS_BYTES = 300 * MIB  # GPU_RUNTIME_BYTES before issue 17
FORMATS = ("Q4_K_M", "Q8_0")
TOLERANCE = 0.10


def _offloads() -> bool:
    """Whether this llama-cpp-python can offload, asked in a separate process (this one reads NVML)."""
    code = "import llama_cpp; print(int(llama_cpp.llama_supports_gpu_offload()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    return out.stdout.strip() == "1"


def _files(work: Path) -> list[Path]:
    """The generated model and its Q4_K_M / Q8_0 conversions (built once, kept in ``work``)."""
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    from benchmarks.generated_model import CONFIG_1B2, build

    folder = build(work / "gen-llama-1.2b", ensure_demo_model(), config=CONFIG_1B2)
    out = work / "gguf"
    out.mkdir(exist_ok=True)
    plan = plan_conversion(open_source(folder), list(FORMATS), out, calibration="none")
    todo = tuple(o for o in plan.outputs if not Path(o.path).exists())
    if todo:
        import dataclasses

        print(f"converting {', '.join(o.format for o in todo)} (calibration none) ...", flush=True)
        convert(dataclasses.replace(plan, outputs=todo))
    return [Path(o.path) for o in plan.outputs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qp-vram",
                    help="where the generated model and its GGUF files are kept")
    ap.add_argument("--contexts", type=int, nargs="+", default=[4096, 32768])
    ap.add_argument("--no-probe", action="store_true", help="use the cached probe result (or none)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from quantpress.core import gpu_probe
    from quantpress.core.estimate import gpu_buffer_terms
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.inspect import open_model
    from quantpress.core.memory import GPU_RUNTIME_DEFAULT_BYTES, RuntimeConfig

    nvml = gpu_probe.open_nvml()
    if nvml is None:
        print("No NVIDIA GPU here (NVML is not available): nothing to measure. Run this benchmark on a machine "
              "with an NVIDIA GPU and a CUDA build of llama-cpp-python.")
        return 0
    nvml.close()
    if not _offloads():
        print("This llama-cpp-python is a CPU build (no GPU offload): install a CUDA build "
              "(CMAKE_ARGS=\"-DGGML_CUDA=on\", README 'GPU notes') and run again.")
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    files = _files(args.work)

    if not args.no_probe:
        probe = gpu_probe.probe_gpu()
        print(f"probe: {probe.gpu_name}, driver {probe.driver}, llama-cpp-python {probe.llama_cpp_version}: "
              f"measured {probe.measured_bytes / MIB:.1f} MiB for {probe.buffers_bytes / MIB:.1f} MiB of buffers "
              f"-> overhead {probe.overhead_bytes / MIB:.1f} MiB (with a {gpu_probe.MARGIN_BYTES / MIB:.0f} MiB "
              "margin)", flush=True)
    gpu = detect_hardware().gpus[0]
    probed = gpu.runtime_bytes
    default = GPU_RUNTIME_DEFAULT_BYTES["cuda"]

    print(f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {gpu.name} (driver {gpu.driver}); "
          "MiB; error = (predicted - measured) / measured\n")
    head = ["file", "n_ctx", "measured", f"pred. old {OLD_GUESS_BYTES // MIB}", "err", f"pred. default {default // MIB}",
            "err", "pred. probed", "err", "model ours/logged", "KV ours/logged", "compute ours/logged"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ok = probed is not None
    for f in files:
        for n_ctx in args.contexts:
            terms = gpu_buffer_terms(open_model(f), RuntimeConfig(n_ctx=n_ctx))
            buffers = sum(terms.values())
            use = gpu_probe.measure_gpu_use(f, n_ctx)
            measured = use.used_bytes
            cells = [f.name, str(n_ctx), f"{measured / MIB:.1f}"]
            for overhead in (OLD_GUESS_BYTES, default, probed):
                if overhead is None:
                    cells += ["–", "–"]
                    continue
                pred = buffers + overhead
                cells += [f"{pred / MIB:.1f}", f"{(pred - measured) / max(measured, 1):+.1%}"]
            if probed is not None:
                pred = buffers + probed
                ok = ok and measured <= pred <= measured * (1 + TOLERANCE)
            for kind in ("model", "KV", "compute"):
                logged = sum(v for k, v in use.logged_buffers.items() if k.endswith(f" {kind}") and k.startswith("CUDA")
                             and not k.startswith("CUDA_Host"))
                cells.append(f"{terms[kind] / MIB:.1f} / {logged / MIB:.1f}")
            print("| " + " | ".join(cells) + " |", flush=True)
    if probed is None:
        print("\nNo probe result for this GPU (run without --no-probe): the acceptance check needs one.")
        return 1
    print(f"\n{'PASS' if ok else 'FAIL'}: every probed prediction >= measured and within {TOLERANCE:.0%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
