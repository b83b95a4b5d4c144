"""Hub intake, offline: a local HTTP server answers the endpoints huggingface_hub calls (model info,
HEAD/GET /resolve with Range), the real client runs in a subprocess pointed at it with HF_ENDPOINT."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tiny_models import tiny_model

SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    repos: dict[str, Path]
    requests: list[str]


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _not_found(self, code: str) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route(self) -> tuple[Path | None, str, str]:
        path = self.path.split("?")[0]
        self.server.requests.append(f"{self.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo = "/".join(parts[2:4])
            return self.server.repos.get(repo), "info", repo
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = "/".join(parts[:2])
            return self.server.repos.get(repo), "/".join(parts[4:]), repo
        return None, "", ""

    def _file(self, head: bool) -> None:
        folder, what, repo = self._route()
        if folder is None:
            return self._not_found("RepoNotFound")
        if what == "info":
            files = sorted(p.name for p in folder.iterdir() if p.is_file())
            body = json.dumps({"id": repo, "modelId": repo, "sha": SHA, "private": False,
                               "siblings": [{"rfilename": f} for f in files]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return None
        target = folder / what
        if not target.is_file():
            return self._not_found("EntryNotFound")
        data = target.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), min(int(b) if b else len(data) - 1, len(data) - 1), 206
        chunk = data[start:end + 1]
        self.send_response(status)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("Content-Length", str(len(chunk)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not head:
            self.wfile.write(chunk)
        return None

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._file(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._file(head=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def hub(tiny_dir: Path) -> Iterator[FakeHub]:
    server = FakeHub(("127.0.0.1", 0), Handler)
    server.repos = {"tiny/llama": tiny_model("llama", tiny_dir), "tiny/qwen2-sharded": tiny_model("qwen2", tiny_dir)}
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run(args: list[str], endpoint: str, cache: Path, offline: str = "0") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE=offline, QUANTPRESS_CACHE_DIR=str(cache),
               HF_HOME=str(cache / "hf"), HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN="")
    env.pop("HF_TOKEN")
    return subprocess.run([sys.executable, "-m", "quantpress.core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def _url(hub: FakeHub) -> str:
    return f"http://127.0.0.1:{hub.server_address[1]}"


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
