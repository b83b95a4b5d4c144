"""quantpress's GGUF header reader (core/gguf/reader.py) against gguf-py, the reference reader: string
arrays (a vocabulary, its merges) read in one tight loop come back as gguf-py reads them, and a file cut
inside such an array is a clear "truncated" error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quantpress.core.errors import InvalidModel
from quantpress.core.gguf.reader import open_gguf

TOKENS = ["<s>", "</s>", "", "Ġthe", "日本語", "é", "\u0120\u010a", *[f"tok{i}" for i in range(500)]]


def _write(path: Path) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_token_list(TOKENS)
    w.add_token_merges(["Ġ t", "h e", "日 本"])
    w.add_array("test.numbers", [1, 2, 3])
    w.add_string("test.after", "still read")
    w.add_tensor("token_embd.weight", np.ones((len(TOKENS), 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_string_arrays_read_as_gguf_py_reads_them(tmp_path: Path) -> None:
    import gguf

    path = _write(tmp_path / "m.gguf")
    ref = gguf.GGUFReader(str(path))
    with open_gguf(path) as g:
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            field = ref.fields[key]
            expected = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            assert g.metadata[key] == expected
            assert g.value_types[key] == "ARRAY[STRING]"
        assert g.metadata["tokenizer.ggml.tokens"] == TOKENS
        assert g.metadata["test.numbers"] == [1, 2, 3]
        assert g.metadata["test.after"] == "still read"  # the cursor stood right after the arrays
        assert g.tensors[0].shape == (len(TOKENS), 32)


def test_a_file_cut_inside_the_vocabulary_is_truncated(tmp_path: Path) -> None:
    data = _write(tmp_path / "m.gguf").read_bytes()
    at = data.index(b"tok250")  # inside the token list
    for cut in (at + 2, at - 5):  # inside a string's bytes, inside its length
        bad = tmp_path / "cut.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(InvalidModel, match=r"cut\.gguf: truncated: the GGUF header ends early"):
            open_gguf(bad)
