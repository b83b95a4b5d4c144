"""``quantpress chat`` end to end, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quantpress.core.cli import main


def test_chat_prompt_json(demo_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["chat", str(demo_gguf), "--prompt", "What is the capital of Japan?", "--temperature", "0",
               "--max-tokens", "12", "--seed", "1", "--ctx", "512", "--kv-type", "q8_0", "--threads", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert "Tokyo" in out["text"] and out["tokens"] > 0 and out["tokens_per_second"] > 0
