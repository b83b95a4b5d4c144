"""Calibration text: the shipped default, user files and chunking (real tokenizers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quantpress.core.calibration.text import (
    chunk_text,
    default_calibration_text,
    load_calibration_text,
    load_tokenizer,
)
from quantpress.core.errors import InvalidInput


def test_default_text_is_a_mix_of_prose_dialogue_and_code() -> None:
    text = default_calibration_text()
    assert len(text) > 100_000
    assert "Assistant:" in text and "def " in text and "#include" in text and "The Lighthouse" in text


def test_default_text_is_long_enough_for_the_demo_model(demo_model_dir: Path) -> None:
    tok = load_tokenizer(demo_model_dir)
    n = len(tok(default_calibration_text(), add_special_tokens=False)["input_ids"])
    assert n > 30_000  # the README says ~33,500 SmolLM2 tokens


def test_long_texts_tokenize_without_the_length_message(demo_model_dir: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    # transformers logs "Token indices sequence length is longer than the specified maximum sequence
    # length" (to stderr, its own handler) past model_max_length: 8192 for the demo model.
    tok = load_tokenizer(demo_model_dir)
    chunks = chunk_text(tok, default_calibration_text(), n_ctx=512)
    assert chunks.n_tokens > 8192
    assert "sequence length" not in capfd.readouterr().err


def test_txt_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "c.txt"
    txt.write_text("hello world", encoding="utf-8")
    assert load_calibration_text(txt) == "hello world"
    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two", "id": 3}) + "\n", encoding="utf-8")
    assert load_calibration_text(jl) == "one\n\ntwo"
    assert load_calibration_text("default") == default_calibration_text()


@pytest.mark.parametrize("line, message", [("{not json", "line 2: not valid JSON"),
                                           ('{"content": "x"}', 'line 2: expected an object with a "text"')])
def test_bad_jsonl_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_calibration_text(jl)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_calibration_text(tmp_path / "nope.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_calibration_text(binary)


def test_chunks_have_equal_length_and_respect_max_tokens(demo_model_dir: Path) -> None:
    tok = load_tokenizer(demo_model_dir)
    chunks = chunk_text(tok, default_calibration_text(), n_ctx=256, max_tokens=1000)
    assert len(chunks.rows) == 3 and all(len(r) == 256 for r in chunks.rows)
    assert chunks.n_tokens == 768 and chunks.n_text_tokens > 30_000


def test_too_little_text_is_a_clear_error(demo_model_dir: Path) -> None:
    tok = load_tokenizer(demo_model_dir)
    with pytest.raises(InvalidInput, match="too little for 1 chunk"):
        chunk_text(tok, "Just a few words.", n_ctx=512)


def test_bos_replaces_the_first_token_when_the_tokenizer_adds_one(tiny) -> None:  # type: ignore[no-untyped-def]
    tok = load_tokenizer(tiny("tinyllama"))  # SentencePiece: adds BOS
    chunks = chunk_text(tok, default_calibration_text()[:20000], n_ctx=64, max_tokens=256)
    assert tok.bos_token_id is not None
    assert all(r[0] == tok.bos_token_id for r in chunks.rows)
