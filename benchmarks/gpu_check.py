"""Issue 17's checks that need an NVIDIA GPU, besides the VRAM table (benchmarks/vram.py).

    .venv/bin/python -m benchmarks.gpu_check [--gguf FILE]

1. Chat on CUDA: the issue's own command, ``quantpress chat FILE --prompt ... --max-tokens 128
   --temperature 0 --ctx 2048 --json``, in a fresh process (it died with SIGSEGV, exit 139, before the
   fix); FILE defaults to benchmarks/vram.py's Q4_K_M of the generated 1.2B llama when it exists,
   else the demo model's GGUF.
2. ``--device auto``: ``quantpress awq demo --json`` (a short pass) and ``quantpress convert demo
   --calibration default --json`` must report ``cuda`` where torch sees the GPU.
3. Issue 15's "GPU + experts in RAM": the small generated Qwen3-MoE of benchmarks/moe_quality.py at
   Q4_K_M, chatted with ``--gpu-layers -1 --n-cpu-moe 2`` (llama.cpp's ``--n-cpu-moe``: the experts of the
   first 2 layers stay in RAM). PASS when it answers and its ``memory.placement`` says "GPU + experts ... in RAM";
   NVML's peak use during that chat and during the same chat with every expert on the GPU
   (``--n-cpu-moe 0``) are printed beside each other: the difference is what the placement moved to RAM,
   to hold against the Fit table's figures (core/estimate.py ``_experts_in_ram``).

Each step runs in its own process and is reported as PASS/FAIL with its exit code. Without an NVIDIA
GPU (no NVML) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

QUANTPRESS = [sys.executable, "-m", "quantpress.core.cli"]


def _run(name: str, args: list[str], check: Callable[[str], tuple[bool, str]]) -> bool:
    t0 = time.monotonic()
    out = subprocess.run([*QUANTPRESS, *args], capture_output=True, text=True, check=False, timeout=1800)
    seconds = time.monotonic() - t0
    ok = False
    detail = out.stderr.strip()[-400:]
    if out.returncode == 0:
        try:
            ok, detail = check(out.stdout)
        except (ValueError, KeyError, IndexError) as exc:
            detail = f"unexpected output ({exc}): {out.stdout.strip()[-300:]}"
    print(f"{'PASS' if ok else 'FAIL'}  {name}: exit {out.returncode}, {seconds:.1f} s; {detail}", flush=True)
    return ok


def _chat(stdout: str) -> tuple[bool, str]:
    reply = json.loads(stdout)
    return bool(reply["text"].strip()), f"{reply['tokens']} tokens, {reply['tokens_per_second'] or 0:.0f} tokens/s"


def _awq(stdout: str) -> tuple[bool, str]:
    device = json.loads(stdout)["device"]
    return device == "cuda", f"device {device}"


def _convert(stdout: str) -> tuple[bool, str]:
    device = json.loads(stdout.strip().splitlines()[-1])["calibration_device"]
    return device == "cuda", f"calibration_device {device}"


def _moe_placement(stdout: str) -> tuple[bool, str]:
    reply = json.loads(stdout)
    placement = str(reply["memory"].get("placement", ""))
    # core/chat/placement.py's words: "GPU + experts of the first N of L layers in RAM"
    return bool(reply["text"].strip()) and placement.startswith("GPU + experts"), f"placement: {placement!r}"


def _peak_vram_during(args: list[str], check: Callable[[str], tuple[bool, str]], name: str) -> tuple[bool, int]:
    """_run with NVML's device-0 "used" sampled while it runs: (passed, peak used - used before)."""
    from quantpress.core.gpu_probe import open_nvml, peak_used_during

    nvml = open_nvml()
    if nvml is None:
        return _run(name, args, check), 0
    try:
        ok, before, peak = peak_used_during(nvml, 0, lambda: _run(name, args, check))
    finally:
        nvml.close()
    return ok, peak - before


def _moe_gguf(work: Path) -> Path:
    from benchmarks.convert_moe import build
    from benchmarks.moe_quality import CONFIG

    model = build(Path(tempfile.gettempdir()) / "qp-large" / "gen-qwen3moe-16x-small", config=CONFIG)
    subprocess.run([*QUANTPRESS, "convert", str(model), "-f", "Q4_K_M", "--out", str(work), "--json"],
                   check=True, capture_output=True, timeout=1800)
    return work / f"{model.name}-Q4_K_M.gguf"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, help="the GGUF to chat with")
    args = ap.parse_args()
    from quantpress.core.gpu_probe import open_nvml

    nvml = open_nvml()
    if nvml is None:
        print("No NVIDIA GPU here (NVML is not available): nothing to check. Run this on a machine with one.")
        return 0
    nvml.close()
    from quantpress.core.demo import demo_gguf_path

    generated = Path(tempfile.gettempdir()) / "qp-vram" / "gguf" / "gen-llama-1.2b-Q4_K_M.gguf"
    gguf = args.gguf or (generated if generated.exists() else demo_gguf_path())
    work = Path(tempfile.mkdtemp(prefix="qp-gpu-check-"))
    results = [
        _run(f"chat on CUDA ({gguf.name})", ["chat", str(gguf), "--prompt", "Write a short poem about the sea.",
                                             "--max-tokens", "128", "--temperature", "0", "--ctx", "2048", "--json"],
             _chat),
        _run("awq --device auto", ["awq", "demo", "--out", str(work / "awq"), "--format", "fp", "--samples", "4",
                                   "--seqlen", "128", "--json"], _awq),
        _run("convert --calibration default (--device auto)", ["convert", "demo", "-f", "Q4_K_M", "--calibration",
                                                               "default", "-o", str(work), "--json"], _convert),
    ]
    moe = _moe_gguf(work)
    chat = ["chat", str(moe), "--prompt", "Hello", "--max-tokens", "16", "--temperature", "0", "--ctx", "2048",
            "--gpu-layers", "-1", "--json"]
    ok, split = _peak_vram_during([*chat, "--n-cpu-moe", "2"], _moe_placement,
                                  "MoE chat, GPU + experts of 2 layers in RAM")
    _, whole = _peak_vram_during([*chat, "--n-cpu-moe", "0"], _chat, "MoE chat, every expert on the GPU")
    print(f"      NVML peak VRAM: {whole / 2**20:.1f} MiB with every expert on the GPU, {split / 2**20:.1f} MiB "
          f"with 2 layers' experts in RAM (moved: {(whole - split) / 2**20:.1f} MiB)")
    results.append(ok)
    print(f"\n{sum(results)}/{len(results)} passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
