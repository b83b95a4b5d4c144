"""Evaluation fixtures: the demo GGUF (Q4_1) and requantized copies made with llama.cpp's own
quantizer (llama_model_quantize, allow_requantize) — engine test material until the converter's
outputs are used."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    from quantpress.core.demo import demo_gguf_path

    return demo_gguf_path()


@pytest.fixture(scope="session")
def requantized(demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    import llama_cpp

    folder = tmp_path_factory.mktemp("requant")
    made: dict[str, Path] = {}

    def make(ftype_name: str) -> Path:
        if ftype_name not in made:
            out = folder / f"smollm2-{ftype_name.lower()}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype_name}")
            params.allow_requantize = True
            params.nthread = 1
            assert llama_cpp.llama_model_quantize(str(demo_gguf).encode(), str(out).encode(), params) == 0
            made[ftype_name] = out
        return made[ftype_name]

    return make


@pytest.fixture(scope="session")
def bigger_vocab_gguf(demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model with 64 extra (unused) tokens: same text tokens, different vocabulary size."""
    import gguf

    extra = 64
    out = tmp_path_factory.mktemp("vocab") / "smollm2-extra-vocab.gguf"
    r = gguf.GGUFReader(demo_gguf)
    w = gguf.GGUFWriter(str(out), str(r.fields["general.architecture"].contents()))
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == "tokenizer.ggml.tokens":
            value = value + [f"<extra_{i}>" for i in range(extra)]
        elif key == "tokenizer.ggml.token_type":
            value = value + [int(gguf.TokenType.USER_DEFINED)] * extra
        main_type = field.types[0]
        sub_type = field.types[-1] if main_type == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, value, main_type, sub_type=sub_type)
    for t in r.tensors:
        data = np.asarray(t.data)
        if t.name == "token_embd.weight":
            data = np.concatenate([data, np.repeat(data[:1], extra, axis=0)])
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
