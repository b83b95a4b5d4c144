"""``python -m quantpress.core.chat.gpu_layers FILE CTX KV``: print the estimator's n_gpu_layers.

Run by :func:`quantpress.core.chat.llama_loader.default_gpu_layers` in its own process, so that the
process which then initialises CUDA inside llama.cpp has done no NVML or estimator work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quantpress.core.chat.llama_loader import estimated_gpu_layers
from quantpress.core.chat.types import KVCacheType


def main(argv: list[str]) -> int:
    path, ctx_tokens, kv = argv
    sys.stdout.write(json.dumps(estimated_gpu_layers(Path(path), int(ctx_tokens), KVCacheType(kv))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
