"""One family end to end, the acceptance check of issues 14 and 16: a tiny random model of the real
transformers class converts to F32, Q8_0, Q4_K_M and Q2_K with the planned sizes and types; the F32
file's next-token log-probabilities match transformers' (64 tokens); tensor names, shapes, metadata
keys and ``{arch}.*`` values equal llama.cpp's own converter's (tests/llama_reference.py) except the
documented departures; every quantized file loads in llama-cpp-python and the Q4_K_M one chats.

    from family_check import check_family     # tests/ is on sys.path under pytest
    plan, paths = check_family(folder, tmp_path)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from llama_reference import reference_gguf
from tiny_models import hf_logprobs, llama_logprobs

if TYPE_CHECKING:
    from quantpress.core.gguf.plan import ConversionPlan

FORMATS = ["F32", "Q8_0", "Q4_K_M", "Q2_K"]
# Keys only quantpress writes (provenance), documented in docs/ARCHITECTURE.md.
OUR_KEYS = ("quantpress.", "general.basename", "general.quantized_by")


def check_family(folder: Path, tmp_path: Path, *, extra_keys: tuple[str, ...] = ()) -> tuple[ConversionPlan, list[Path]]:
    """Run every check on the HF ``folder``; ``extra_keys``: metadata keys quantpress writes on purpose
    and llama.cpp's converter does not (each one a documented departure). Returns the plan and files."""
    from llama_cpp import Llama
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.source import open_source

    out = tmp_path / "ours"
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_conversion(open_source(folder), FORMATS, out)
    paths = [Path(r.output) for r in convert(plan)]
    for o, path in zip(plan.outputs, paths, strict=True):
        assert path.stat().st_size == o.file_bytes, o.format
        with open_gguf(path) as g:
            assert {t.name: t.ggml_type for t in g.tensors} == o.tensor_types

    # F32 next-token log-probabilities equal transformers' (64 tokens, ids inside every tiny vocabulary)
    config = json.loads((folder / "config.json").read_text())
    n_vocab = config.get("text_config", config)["vocab_size"]
    ids = [int(i) for i in np.random.default_rng(1).integers(3, n_vocab, 64)]
    diff = np.abs(llama_logprobs(paths[0], ids) - hf_logprobs(folder, ids)).max()
    assert diff < 0.01, f"{folder.name}: max |Δ log p| = {diff}"

    # the same tensors (names, shapes) and metadata keys as llama.cpp's own converter
    ref = reference_gguf(folder, tmp_path / "ref.gguf")
    with open_gguf(ref) as r, open_gguf(paths[0]) as g:
        assert {t.name: t.shape for t in g.tensors} == {t.name: t.shape for t in r.tensors}
        ours = {k for k in g.metadata if not k.startswith(OUR_KEYS) and k not in extra_keys}
        assert ours == set(r.metadata), (ours ^ set(r.metadata))
        for k in (k for k in r.metadata if k.startswith(r.architecture + ".")):
            ours_v, ref_v = g.metadata[k], r.metadata[k]
            same = ours_v == ref_v if isinstance(ref_v, str) else np.allclose(ours_v, ref_v)
            assert same, (k, ours_v, ref_v)
        assert g.get("general.size_label") == r.get("general.size_label")

    # every quantized file loads; the Q4_K_M file chats with the model's template
    for path in paths[1:]:
        llm = Llama(str(path), n_ctx=256, verbose=False, n_threads=2)
        try:
            if "Q4_K_M" in path.name:
                reply = llm.create_chat_completion([{"role": "user", "content": "Hello there"}], max_tokens=8,
                                                   temperature=0)
                assert reply["usage"]["completion_tokens"] > 0, path.name
        finally:
            llm.close()
    return plan, paths
