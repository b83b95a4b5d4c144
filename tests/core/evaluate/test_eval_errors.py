"""Bad input to evaluate(): each a clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.errors import Cancelled, InvalidInput, ModelLoadError
from quantpress.core.evaluate import eval_text, evaluate, read_eval_text
from quantpress.core.evaluate.text import EvalText
from quantpress.core.jobs import CancelToken


def test_empty_text(tmp_path: Path, demo_gguf: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(InvalidInput, match="empty"):
        read_eval_text(empty)
    with pytest.raises(InvalidInput, match="empty"):
        evaluate(demo_gguf, text=EvalText("blank", " "), cache_dir=tmp_path, save=False)


def test_text_shorter_than_two_contexts(tmp_path: Path, demo_gguf: Path) -> None:
    with pytest.raises(InvalidInput, match="needs at least 1024"):
        evaluate(demo_gguf, text=eval_text("A short text. " * 20), ctx_tokens=512, threads=1,
                 cache_dir=tmp_path, save=False)


def test_gguf_that_fails_to_load(tmp_path: Path, demo_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(demo_gguf.read_bytes()[:3_000_000])
    with pytest.raises(ModelLoadError, match="truncated"):
        evaluate(cut, cache_dir=tmp_path, save=False)
    with pytest.raises(ModelLoadError, match="cut.gguf"):
        evaluate(demo_gguf, cut, cache_dir=tmp_path, save=False)


def _tiny_gguf(path: Path, n_vocab: int) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(16)  # metadata quantpress checks before any runtime sees the file
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_tensor("token_embd.weight", np.zeros((n_vocab, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_reference_with_a_different_vocabulary_fails_before_any_pass(tmp_path: Path, demo_gguf: Path) -> None:
    other = _tiny_gguf(tmp_path / "other.gguf", 300)
    with pytest.raises(InvalidInput, match="vocabulary of 49152 tokens but the reference other.gguf has 300"):
        evaluate(demo_gguf, other, cache_dir=tmp_path, save=False)


@pytest.mark.slow
def test_loadable_reference_with_a_bigger_vocabulary(tmp_path: Path, demo_gguf: Path, bigger_vocab_gguf: Path) -> None:
    with pytest.raises(InvalidInput, match="vocabulary of 49152 tokens but the reference .* has 49216"):
        evaluate(demo_gguf, bigger_vocab_gguf, max_tokens=128, ctx_tokens=32, threads=1, cache_dir=tmp_path,
                 save=False)


def test_cancel_leaves_no_reference_cache(tmp_path: Path, demo_gguf: Path, requantized: Callable[[str], Path]) -> None:
    cancel = CancelToken()

    def cancel_at_first_progress(_: object) -> None:
        cancel.cancel()

    with pytest.raises(Cancelled):
        evaluate(demo_gguf, requantized("MOSTLY_Q8_0"), max_tokens=256, ctx_tokens=64, threads=1,
                 cache_dir=tmp_path / "cache", save=False, report=cancel_at_first_progress, cancel=cancel)
    assert list((tmp_path / "cache").iterdir()) == []
