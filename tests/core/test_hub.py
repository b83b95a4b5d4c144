"""Hub intake, offline: a local HTTP server (tests/hub_server.py) answers the endpoints huggingface_hub
calls (model info, HEAD/GET /resolve with Range), the real client runs in a subprocess pointed at it
with HF_ENDPOINT. Downloads are tested in tests/core/test_hub_download.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import FakeHub, client_env, hub_url, start_hub
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def hub(tiny_dir: Path) -> Iterator[FakeHub]:
    bad = shutil.copytree(tiny_model("llama", tiny_dir), tiny_dir / "bad-config")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(dict(config, num_attention_heads=0)))
    server = start_hub({"tiny/llama": tiny_model("llama", tiny_dir), "tiny/qwen2-sharded": tiny_model("qwen2", tiny_dir),
                        "tiny/bad-config": bad})
    yield server
    server.shutdown()
    server.server_close()


def _run(args: list[str], endpoint: str, cache: Path, offline: str = "0") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **client_env(endpoint, cache, offline))
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "quantpress.core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def _url(hub: FakeHub) -> str:
    return hub_url(hub)


def test_hub_repo_estimated_from_metadata_only(hub: FakeHub, tmp_path: Path) -> None:
    from quantpress.core.estimate import estimate
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.inspect import open_model
    from quantpress.core.memory import RuntimeConfig

    out = _run(["estimate", "tiny/llama", "--json", "--context", "1024", "--format", "Q4_K_M", "--format", "Q8_0",
                "--vram", "0"], _url(hub), tmp_path)
    assert out.returncode == 0, out.stderr
    remote = json.loads(out.stdout)
    local_model = open_model(hub.repos["tiny/llama"])
    local = estimate(local_model, detect_hardware().with_overrides(vram_gib=0), RuntimeConfig(n_ctx=1024),
                     formats=["Q4_K_M", "Q8_0"])
    assert remote["model"]["params"] == local_model.n_params
    assert remote["model"]["kind"] == "hub"
    assert [f["format"] for f in remote["formats"]][:2] == ["Q8_0", "Q4_K_M"]
    for r, lo in zip(remote["formats"], local.formats, strict=True):
        assert r["weights_bytes"] == lo.weights_bytes
        assert r["kv_cache_bytes"] == lo.kv_cache_bytes
        # metadata differs only in quantpress.source (repo id vs path)
        assert abs(r["file_bytes"] - lo.file_bytes) < 256
    # Only small files and header ranges were fetched: never a whole safetensors body.
    gets = [r for r in hub.requests if r.startswith("GET") and r.endswith(".safetensors")]
    assert gets, hub.requests
    weights = hub.repos["tiny/llama"] / "model.safetensors"
    assert weights.stat().st_size > 100_001  # the 100 kB range is really partial


def test_hub_sharded_repo(hub: FakeHub, tmp_path: Path) -> None:
    out = _run(["inspect", "tiny/qwen2-sharded", "--json"], _url(hub), tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    from quantpress.core.inspect import open_model

    assert data["params"] == open_model(hub.repos["tiny/qwen2-sharded"]).n_params
    assert len({t["file"] for t in data["tensors"]}) > 1


def test_hub_repo_not_found(hub: FakeHub, tmp_path: Path) -> None:
    out = _run(["inspect", "nobody/nothing"], _url(hub), tmp_path)
    assert out.returncode == 2
    line = out.stderr.strip()
    assert "\n" not in line and "no such model on the Hub" in line


def test_hub_repo_with_a_bad_config_is_refused_from_its_metadata(hub: FakeHub, tmp_path: Path) -> None:
    out = _run(["estimate", "tiny/bad-config"], _url(hub), tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    assert "tiny/bad-config/config.json: 'num_attention_heads' is 0" in out.stderr


def test_hub_offline_is_not_not_found(hub: FakeHub, tmp_path: Path) -> None:
    out = _run(["inspect", "nobody/nothing"], _url(hub), tmp_path, offline="1")
    assert out.returncode == 2 and "offline" in out.stderr and "no such model" not in out.stderr
    with socket.socket() as s:  # a port nobody listens on: unreachable, decided by the probe at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _run(["inspect", "tiny/llama"], f"http://127.0.0.1:{port}", tmp_path)
    assert out.returncode == 2 and "offline" in out.stderr and "cannot be reached" in out.stderr


def test_hub_cached_description_works_offline(hub: FakeHub, tmp_path: Path) -> None:
    assert _run(["inspect", "tiny/llama", "--json"], _url(hub), tmp_path).returncode == 0
    out = _run(["inspect", "tiny/llama", "--json"], _url(hub), tmp_path, offline="1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "hub"
