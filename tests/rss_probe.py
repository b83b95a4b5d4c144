"""The ground truth the CPU memory estimate is checked against (tests/core/test_memory.py and
benchmarks/estimate_memory.py): the peak RSS increase of a fresh process that loads a GGUF."""

from __future__ import annotations

import json
import subprocess
import sys

from quantpress.core.memory import RuntimeConfig

_PROBE = r"""
import json, sys
import psutil
path, n_ctx, n_batch, kv_type, fa = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
import llama_cpp
types = {"f16": 1, "f32": 0, "q8_0": 8, "q4_0": 2}
proc = psutil.Process()
base = proc.memory_info().rss
kw = dict(type_k=types[kv_type], type_v=types[kv_type]) if kv_type != "f16" else {}
llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_batch, n_threads=2, verbose=False,
                      flash_attn=fa, **kw)
n_vocab = llm.n_vocab()
llm.eval([3 + (i * 7919) % (n_vocab - 3) for i in range(n_ctx)])
now = proc.memory_info().rss
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent's peak inherited at fork).
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"base": base, "now": now, "peak": max(hwm, now)}))
"""


def measure_rss_increase(gguf_path: str, cfg: RuntimeConfig, timeout_s: float = 600) -> int:
    """Peak RSS increase of a fresh process that loads ``gguf_path`` with llama-cpp-python and
    evaluates ``cfg.n_ctx`` tokens (a full context). The ground truth the CPU estimate is
    calibrated against; a subprocess so that nothing of an earlier load is counted."""
    args = [sys.executable, "-c", _PROBE, str(gguf_path), str(cfg.n_ctx), str(cfg.n_batch), cfg.kv_type,
            "1" if cfg.fa else "0"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"measurement failed: {out.stderr.strip()[-500:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return int(data["peak"]) - int(data["base"])
