"""gpt-oss and DeepSeek-V3 end to end on tiny random models of the real transformers classes
(tests/tiny_models.py), against transformers and llama.cpp's own converter in the same run.

    .venv/bin/python -m benchmarks.moe_families [--families gptoss,deepseekv3]

Per family: quantpress converts to F32, Q8_0, Q4_K_M, Q2_K and MXFP4_MOE; llama.cpp's
convert_hf_to_gguf.py (from the llama-cpp-python sdist) converts to F32. Printed: the largest
next-token log-probability difference to transformers over 64 tokens (float32, F32 KV cache) for
quantpress's F32 file and llama.cpp's; whether tensor names and shapes, metadata keys and ``{arch}.*``
values and the F32 tensor bytes equal llama.cpp's; each file's size against the plan; and whether the
Q4_K_M file answers a chat turn with the model's template.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["F32", "Q8_0", "Q4_K_M", "Q2_K", "MXFP4_MOE"]
OUR_KEYS = ("quantpress.", "general.basename", "general.quantized_by")


def _same(a: object, b: object) -> bool:
    return a == b if isinstance(b, str) else bool(np.allclose(a, b))  # type: ignore[arg-type]


def family(name: str, work: Path) -> dict[str, object]:
    sys.path.insert(0, str(ROOT / "tests"))
    from llama_reference import reference_gguf
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.source import open_source
    from tiny_models import hf_logprobs, llama_logprobs, tiny_model

    folder = tiny_model(name, work / "models")
    plan = plan_conversion(open_source(folder), FORMATS, work / name)
    (work / name).mkdir(exist_ok=True)
    paths = [Path(r.output) for r in convert(plan)]
    ref = reference_gguf(folder, work / f"ref-{name}.gguf")
    row: dict[str, object] = {"family": name}
    with open_gguf(ref) as r, open_gguf(paths[0]) as g:
        row["tensors"] = {t.name: t.shape for t in g.tensors} == {t.name: t.shape for t in r.tensors}
        row["keys"] = {k for k in g.metadata if not k.startswith(OUR_KEYS)} == set(r.metadata)
        row["values"] = all(_same(g.metadata[k], r.metadata[k]) for k in r.metadata if k.startswith(r.architecture))
        row["bytes"] = all(np.array_equal(np.asarray(g.raw(t.name)), np.asarray(r.raw(t.name))) for t in r.tensors)
    n_vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    ids = [int(i) for i in np.random.default_rng(1).integers(3, n_vocab, 64)]
    hf = hf_logprobs(folder, ids)
    row["ours"] = float(np.abs(llama_logprobs(paths[0], ids) - hf).max())
    row["llama.cpp"] = float(np.abs(llama_logprobs(ref, ids) - hf).max())
    row["sizes"] = all(p.stat().st_size == o.file_bytes for p, o in zip(paths, plan.outputs, strict=True))
    from llama_cpp import Llama

    llm = Llama(str(paths[FORMATS.index("Q4_K_M")]), n_ctx=256, verbose=False, n_threads=2)
    try:
        reply = llm.create_chat_completion([{"role": "user", "content": "Hello there"}], max_tokens=8, temperature=0)
        row["chat"] = reply["usage"]["completion_tokens"] > 0
    finally:
        llm.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="gptoss,deepseekv3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qp-moe-families-") as tmp:
        rows = [family(f, Path(tmp)) for f in args.families.split(",")]
    print("| family | max abs Δ log p, quantpress F32 | same, llama.cpp F32 | tensors | keys | arch values "
          "| F32 bytes | sizes = plan (5 formats) | Q4_K_M chat |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['ours']:.2e} | {r['llama.cpp']:.2e} | {r['tensors']} | {r['keys']} | {r['values']} "
              f"| {r['bytes']} | {r['sizes']} | {r['chat']} |")


if __name__ == "__main__":
    main()
