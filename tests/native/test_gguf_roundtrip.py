"""End to end: a demo-model GGUF whose every quantized tensor comes from quantpress's own kernels
loads in llama-cpp-python and generates text (issue 6, format acceptance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize
from quantpress import native


def pick_type(name: str, n_per_row: int) -> str:
    # Rows of 1536 (mlp.down) take Q4_K; rows of 576 take IQ4_NL, the tied embedding Q8_0.
    if n_per_row % 256 == 0:
        return "Q4_K"
    return "IQ4_NL" if "token_embd" not in name else "Q8_0"


def rewrite_with_native_kernels(src: Path, dst: Path) -> set[str]:
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[1]) if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)
    used = set()
    for t in reader.tensors:
        shape = tuple(int(v) for v in reversed(t.shape.tolist()))  # numpy order (rows, n_per_row)
        x = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if len(shape) == 2:
            qtype = pick_type(t.name, shape[1])
            q = native.quantize(np.ascontiguousarray(x), qtype)
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType[qtype])
            used.add(qtype)
        else:
            writer.add_tensor(t.name, x)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return used


@pytest.mark.slow
def test_native_quantized_demo_gguf_runs_in_llama_cpp(tmp_path: Path) -> None:
    from llama_cpp import Llama
    from quantpress.core.demo import demo_gguf_path

    out = tmp_path / "demo-native.gguf"
    used = rewrite_with_native_kernels(demo_gguf_path(), out)
    assert {"Q4_K", "IQ4_NL", "Q8_0"} <= used
    llm = Llama(str(out), n_ctx=256, n_threads=2, verbose=False)
    text = llm("The capital of France is", max_tokens=8, temperature=0.0)["choices"][0]["text"]
    assert text.strip(), "no text generated"
    assert "Paris" in text or len(set(text.split())) > 1  # coherent, not one repeated token
