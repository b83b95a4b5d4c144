"""Downloading a Hub model for conversion, against the local fake Hub (tests/hub_server.py) with the real
huggingface_hub client: what is fetched (and what never is), byte progress, cancel, gated repos and
login, pickle-only refusal, disk and offline preflights, and the CLI round trip download -> convert."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hub_server import TOKEN, FakeHub, client_env, configure_client, hub_url, serving
from quantpress.core.errors import (
    Cancelled,
    GatedRepo,
    InvalidInput,
    InvalidModel,
    NetworkUnavailable,
    NotEnoughDiskSpace,
)
from quantpress.core.hub_download import download, downloaded_path, login_token, plan_download
from quantpress.core.jobs import CancelToken, Progress
from tiny_models import tiny_model

BIG_BYTES = 24 * 2**20  # > two of huggingface_hub's 10 MiB download chunks: cancel lands inside the file


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repos")
    llama = tiny_model("llama", root)
    mixed = root / "mixed"  # safetensors plus things conversion must never fetch
    shutil.copytree(llama, mixed)
    (mixed / "pytorch_model.bin").write_bytes(b"\x80\x04pickle" * 1000)
    (mixed / "onnx").mkdir()
    (mixed / "onnx" / "model.onnx").write_bytes(b"onnx" * 1000)
    (mixed / "README.md").write_text("# mixed\n")
    big = root / "big"
    big.mkdir()
    shutil.copy(llama / "config.json", big / "config.json")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(BIG_BYTES // 4, dtype=np.float32)}, str(big / "model.safetensors"))
    pickle_only = root / "pickle"
    pickle_only.mkdir()
    shutil.copy(llama / "config.json", pickle_only / "config.json")
    (pickle_only / "pytorch_model.bin").write_bytes(b"\x80\x04pickle" * 1000)
    for name, files in (("gguf-one", ["m-Q8_0.gguf"]), ("gguf-two", ["m-Q4_K_M.gguf", "m-Q8_0.gguf"])):
        (root / name).mkdir()
        (root / name / "README.md").write_text("# gguf\n")
        for f in files:
            (root / name / f).write_bytes(b"GGUF" + f.encode() * 100)
    return {"tiny/gguf-one": root / "gguf-one", "tiny/gguf-two": root / "gguf-two", "tiny/mixed": mixed, "tiny/qwen2-sharded": tiny_model("qwen2", root), "tiny/big": big,
            "tiny/pickle": pickle_only, "tiny/gated": llama}


@pytest.fixture(scope="module")
def hub(repos: dict[str, Path]) -> Iterator[FakeHub]:
    yield from serving(repos, gated={"tiny/gated"})


@pytest.fixture
def client(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    configure_client(monkeypatch, hub_url(hub), tmp_path)
    return tmp_path


def _cache_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "hf" / "hub").rglob("*") if p.is_file())


def test_download_fetches_what_conversion_needs_with_byte_progress(hub: FakeHub, repos: dict[str, Path],
                                                                   client: Path) -> None:
    from quantpress.core.inspect import open_model

    source = repos["tiny/mixed"]
    plan = plan_download("tiny/mixed")
    names = {f.name for f in plan.files}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not {"pytorch_model.bin", "onnx/model.onnx", "README.md"} & names
    assert plan.total_bytes == sum((source / n).stat().st_size for n in names)  # known before the transfer
    assert plan.files[-1].name == "model.safetensors"  # weights last
    assert not _cache_files(client) or all(not p.name.endswith(".safetensors") for p in _cache_files(client))

    seen: list[Progress] = []
    result = download("tiny/mixed", report=seen.append)
    assert result.path == plan.snapshot_dir and result.n_bytes == plan.total_bytes
    for name in names:
        assert (result.path / name).read_bytes() == (source / name).read_bytes()
    assert not (result.path / "pytorch_model.bin").exists() and not (result.path / "onnx").exists()
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(0.0 < f < 1.0 for f in fractions)  # bytes reported inside the download, not only at the end
    assert all(p.total == plan.total_bytes and p.done <= p.total for p in seen if p.total)
    assert any(" MB" in p.message and " of " in p.message for p in seen)
    served = sum(hub.sent_bytes.get(f"tiny/mixed/{n}", 0) for n in names)
    assert served == plan.total_bytes
    assert "tiny/mixed/pytorch_model.bin" not in hub.sent_bytes

    model = open_model(result.path)  # an ordinary HF folder, named after the repo, not the commit
    assert model.name == "mixed" and model.n_params == open_model(source).n_params
    assert downloaded_path("tiny/mixed") == result.path

    again = download("tiny/mixed")  # everything cached: nothing fetched again
    assert again.path == result.path
    assert sum(hub.sent_bytes.get(f"tiny/mixed/{n}", 0) for n in names) == served


def test_sharded_repo_fetches_index_and_listed_shards(client: Path, repos: dict[str, Path]) -> None:
    from quantpress.core.inspect import open_model

    source = repos["tiny/qwen2-sharded"]
    weight_map = json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
    result = download("tiny/qwen2-sharded")
    got = {p.name for p in result.path.glob("*.safetensors")}
    assert got == set(weight_map.values()) and len(got) > 1
    assert open_model(result.path).n_params == open_model(source).n_params


def test_cancel_inside_a_file_leaves_no_complete_model(hub: FakeHub, client: Path) -> None:
    token = CancelToken()
    seen: list[Progress] = []

    def report(p: Progress) -> None:
        seen.append(p)
        if p.message.startswith("model.safetensors") and p.fraction > 0:
            token.cancel()  # after the first 10 MiB chunk of the weights

    with pytest.raises(Cancelled):
        download("tiny/big", report=report, cancel=token)
    assert seen and max(p.fraction for p in seen) < 1.0
    plan = plan_download("tiny/big")
    assert not plan.snapshot_dir.exists()  # no half folder: not even config.json stays linked
    assert not list((client / "hf" / "hub").rglob("*.incomplete"))
    assert downloaded_path("tiny/big") is None

    seen.clear()
    result = download("tiny/big", report=seen.append)  # a retry completes
    assert (result.path / "model.safetensors").stat().st_size == plan.total_bytes - plan.files[0].n_bytes
    assert [p.fraction for p in seen][-1] == 1.0


def test_gated_repo_needs_a_token_then_login_works(client: Path) -> None:
    with pytest.raises(GatedRepo) as info:
        download("tiny/gated")
    assert info.value.repo_id == "tiny/gated"
    assert "token" in str(info.value) and "tiny/gated" in str(info.value)
    assert not plan_download("tiny/gated").snapshot_dir.exists()
    with pytest.raises(InvalidInput, match="refused this token"):
        login_token("hf_not_the_right_one")
    login_token(TOKEN)  # stored where huggingface_hub keeps it, nowhere of ours
    assert (client / "hf" / "token").read_text().strip() == TOKEN
    result = download("tiny/gated")
    assert (result.path / "model.safetensors").is_file()


def test_pickle_only_and_missing_repos_are_refused(client: Path) -> None:
    with pytest.raises(InvalidModel, match="pickle") as info:
        download("tiny/pickle")
    assert "safetensors" in str(info.value)
    with pytest.raises(InvalidModel, match="no such model"):
        download("nobody/nothing")
    assert not list((client / "hf" / "hub").rglob("*.bin"))


def test_gguf_only_repo_gives_its_one_file_or_asks_which(client: Path, repos: dict[str, Path]) -> None:
    one = download("tiny/gguf-one")
    assert one.path.name == "m-Q8_0.gguf" and one.files == ("m-Q8_0.gguf",)
    assert one.path.read_bytes() == (repos["tiny/gguf-one"] / "m-Q8_0.gguf").read_bytes()
    with pytest.raises(InvalidInput, match="--file") as info:
        download("tiny/gguf-two")
    assert "m-Q4_K_M.gguf" in str(info.value) and "m-Q8_0.gguf" in str(info.value)
    picked = download("tiny/gguf-two", filename="m-Q4_K_M.gguf")
    assert picked.files == ("m-Q4_K_M.gguf",) and not (picked.path.parent / "m-Q8_0.gguf").exists()


def test_disk_space_is_checked_before_the_transfer(hub: FakeHub, client: Path) -> None:
    before = dict(hub.sent_bytes)
    with pytest.raises(NotEnoughDiskSpace, match="needs .* MiB but only 10 MiB are free") as info:
        download("tiny/big", disk_free=lambda _: 10 * 2**20)
    assert "HF_HUB_CACHE" in str(info.value)
    assert hub.sent_bytes == before  # refused before a single byte of a file was fetched


def test_offline_is_clear_and_finds_an_earlier_download(client: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NetworkUnavailable, match="offline"):
        download("tiny/mixed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    first = download("tiny/mixed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = download("tiny/mixed")
    assert again.path == first.path and set(again.files) == set(first.files)


def test_cli_download_then_convert(hub: FakeHub, tmp_path: Path) -> None:
    env = dict(os.environ, **client_env(hub_url(hub), tmp_path))
    env.pop("HF_TOKEN", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quantpress.core.cli", *args], capture_output=True,
                              text=True, env=env, timeout=300, check=False)

    out = cli("download", "tiny/mixed", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"repo", "path", "files", "bytes", "seconds"}
    assert data["repo"] == "tiny/mixed" and "model.safetensors" in data["files"] and data["bytes"] > 0
    path = Path(data["path"])
    assert path.is_relative_to(tmp_path / "hf" / "hub")
    plain = cli("download", "tiny/mixed")  # text mode: the path alone on stdout
    assert plain.returncode == 0 and plain.stdout.strip() == str(path)

    dry = cli("convert", str(path), "--format", "Q8_0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = Path(json.loads(dry.stdout)[0]["output"])
    assert planned.name == "mixed-Q8_0.gguf"
    assert not planned.is_relative_to(tmp_path / "hf")  # never written into huggingface_hub's cache

    conv = cli("convert", plain.stdout.strip(), "--format", "Q8_0", "--out", str(tmp_path / "out"), "--json")
    assert conv.returncode == 0, conv.stderr
    assert Path(json.loads(conv.stdout.splitlines()[-1])["output"]).stat().st_size > 0

    refused = cli("download", "tiny/pickle")
    assert refused.returncode == 2 and "pickle" in refused.stderr and "Traceback" not in refused.stderr
