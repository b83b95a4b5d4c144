"""Issue 17's checks that need an NVIDIA GPU, besides the VRAM table (benchmarks/vram.py).

    .venv/bin/python -m benchmarks.gpu_check [--gguf FILE]

1. Chat on CUDA: the issue's own command, ``quantpress chat FILE --prompt ... --max-tokens 128
   --temperature 0 --ctx 2048 --json``, in a fresh process (it died with SIGSEGV, exit 139, before the
   fix); FILE defaults to benchmarks/vram.py's Q4_K_M of the generated 1.2B llama when it exists,
   else the demo model's GGUF.
2. ``--device auto``: ``quantpress awq demo --json`` (a short pass) and ``quantpress convert demo
   --calibration default --json`` must report ``cuda`` where torch sees the GPU.

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
    print(f"\n{sum(results)}/{len(results)} passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
