"""``quantpress eval`` end to end, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quantpress.core.cli import main


def test_eval_json_and_errors(demo_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # reference cache goes to the user cache
    model = tmp_path / "m.gguf"
    model.symlink_to(demo_gguf)
    rc = main(["eval", str(model), "--reference", str(model), "--ctx", "32", "--tokens", "64", "--threads", "1",
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("perplexity", "reference_perplexity", "kld_mean", "kld_p99", "top1_agreement", "tokens"):
        assert key in out
    assert out["top1_agreement"] == 1.0 and out["tokens"] == 2 * 15
    assert (tmp_path / "m.gguf.json").is_file()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["eval", str(model), "--text", str(empty)]) == 2
    assert "error: The evaluation text (empty.txt) is empty." in capsys.readouterr().err
