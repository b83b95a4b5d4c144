"""``python -m quantpress.core.chat.gpu_layers FILE CTX KV``: print the estimator's placement,
``[n_gpu_layers, n_cpu_moe]``.

Run by :func:`quantpress.core.chat.llama_loader.default_placement` in its own process, so that the
process which then initialises CUDA inside llama.cpp has done no NVML or estimator work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quantpress.core.chat.llama_loader import estimated_placement
from quantpress.core.chat.types import KVCacheType


def main(argv: list[str]) -> int:
    path, ctx_tokens, kv = argv
    place = estimated_placement(Path(path), int(ctx_tokens), KVCacheType(kv))
    sys.stdout.write(json.dumps([place.gpu_layers, place.n_cpu_moe]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
