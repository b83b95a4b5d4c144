"""Llama 4 past its first attention chunk: the tiny random Llama4ForCausalLM of tests/tiny_models.py
(RoPE layers attending within chunks of 8192 tokens, a NoPE layer attending globally with its
attention temperature rising from position 8191 on), converted to F32 by quantpress, against
transformers on one sequence longer than a chunk.

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.llama4_chunks [--tokens 8448]

Printed: the largest next-token log-probability difference between llama.cpp on quantpress's F32 GGUF
(F32 KV cache) and transformers (float32, sdpa), before position 8191 and from there on; and the same
against transformers with chunking turned off (every layer full attention), which shows that the
comparison can tell the two apart after the boundary. The family tests' 64 tokens cannot reach either.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 8192


def _log_softmax(x: Any) -> Any:
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def _hf(folder: Path, ids: list[int], **overrides: Any) -> Any:
    import torch
    import transformers

    model = transformers.Llama4ForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa",
                                                           **overrides)
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=CHUNK + 256)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from llama_cpp import Llama
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source
    from tiny_models import tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = tiny_model("llama4", work)
        (result,) = convert(plan_conversion(open_source(folder), ["F32"], work))
        ids = [int(i) for i in np.random.default_rng(2).integers(3, 49152, args.tokens)]
        start = time.perf_counter()
        llm = Llama(result.output, n_ctx=args.tokens + 256, logits_all=True, verbose=False, n_threads=2,
                    type_k=0, type_v=0)
        try:
            llm.eval(ids)
            ours = _log_softmax(np.array(llm.scores[: len(ids)], dtype=np.float64))
        finally:
            llm.close()
        print(f"llama.cpp: {time.perf_counter() - start:.0f} s for {len(ids)} tokens")
        rows = [("transformers (chunked, as the config)", _hf(folder, ids)),
                ("transformers with chunking off", _hf(folder, ids, layer_types=["full_attention"] * 4))]
        for label, ref in rows:
            d = np.abs(ours - ref).max(axis=1)
            print(f"{label}: max |Δ log p| positions 0-{CHUNK - 2}: {d[:CHUNK - 1].max():.2e}, "
                  f"{CHUNK - 1}-{len(ids) - 1}: {d[CHUNK - 1:].max():.2e}")


if __name__ == "__main__":
    main()
