"""A local HTTP server that answers the Hub endpoints huggingface_hub calls, for offline tests:
model info (with file sizes and LFS data when ``?blobs=true``), HEAD/GET ``/resolve`` with Range and
the ETag / X-Repo-Commit / Content-Length headers the client needs, ``/api/whoami-v2`` for login, and
gated repos (401/403 with ``X-Error-Code: GatedRepo`` until the request carries the accepted token).

    server = start_hub({"tiny/llama": folder})          # a repo is a local folder
    configure_client(monkeypatch, hub_url(server), tmp)  # the in-process client, pointed at it
    server.shutdown(); server.server_close()

Real huggingface_hub code runs against it: nothing of the client is replaced.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_quantpress_test_token"  # the one token the fake Hub accepts


class FakeHub(ThreadingHTTPServer):
    repos: dict[str, Path]
    gated: set[str]
    requests: list[str]
    sent_bytes: dict[str, int]  # bytes of file bodies sent, per repo path

    def files(self, repo: str) -> dict[str, Path]:
        folder = self.repos[repo]
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, head: bool) -> None:
        self._send(status, b"", {"X-Error-Code": code, "X-Error-Message": code}, head)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

    def _route(self) -> tuple[str, str, str]:
        """(kind, repo, file) with kind in info / resolve / whoami / ''."""
        path = self.path.split("?")[0]
        self.server.requests.append(f"{self.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "whoami-v2"]:
            return "whoami", "", ""
        if parts[:2] == ["api", "models"]:
            return "info", "/".join(parts[2:4]), ""
        if len(parts) >= 5 and parts[2] == "resolve":
            return "resolve", "/".join(parts[:2]), "/".join(parts[4:])
        return "", "", ""

    def _info(self, repo: str, head: bool) -> None:
        blobs = "blobs=true" in self.path
        siblings: list[dict[str, Any]] = []
        for name, path in self.server.files(repo).items():
            entry: dict[str, Any] = {"rfilename": name}
            if blobs:
                size = path.stat().st_size
                entry.update(size=size, blobId=hashlib.sha1(path.read_bytes()).hexdigest())
                if name.endswith((".safetensors", ".bin", ".gguf")):
                    entry["lfs"] = {"sha256": _sha256(path), "size": size, "pointerSize": 134}
            siblings.append(entry)
        body = json.dumps({"id": repo, "modelId": repo, "sha": SHA, "private": False,
                           "gated": "manual" if repo in self.server.gated else False,
                           "siblings": siblings}).encode()
        self._send(200, body, {"Content-Type": "application/json"}, head)

    def _file(self, repo: str, name: str, head: bool) -> None:
        if repo in self.server.gated and not self._authorized():
            # The Hub: 401 without a token, 403 with one that has not been granted access.
            status = 403 if self.headers.get("Authorization") else 401
            return self._error(status, "GatedRepo", head)
        target = self.server.files(repo).get(name)
        if target is None:
            return self._error(404, "EntryNotFound", head)
        data = target.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), min(int(b) if b else len(data) - 1, len(data) - 1), 206
        chunk = data[start:end + 1]
        headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": SHA}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        if not head:  # counted before sending: the client may go on before this thread runs again
            key = f"{repo}/{name}"
            self.server.sent_bytes[key] = self.server.sent_bytes.get(key, 0) + len(chunk)
        self._send(status, chunk, headers, head)
        return None

    def _handle(self, head: bool) -> None:
        kind, repo, name = self._route()
        if kind == "whoami":
            if not self._authorized():
                return self._error(401, "Unauthorized", head)
            body = json.dumps({"type": "user", "name": "tester",
                               "auth": {"accessToken": {"displayName": "quantpress-test", "role": "read"}}}).encode()
            return self._send(200, body, {"Content-Type": "application/json"}, head)
        if kind == "" or repo not in self.server.repos:
            return self._error(404, "RepoNotFound", head)
        if kind == "info":
            return self._info(repo, head)
        return self._file(repo, name, head)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._handle(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(head=True)


def start_hub(repos: dict[str, Path], gated: set[str] | None = None) -> FakeHub:
    server = FakeHub(("127.0.0.1", 0), Handler)
    server.repos = dict(repos)
    server.gated = set(gated or ())
    server.requests = []
    server.sent_bytes = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def hub_url(server: FakeHub) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def client_env(url: str, home: Path, offline: str = "0") -> dict[str, str]:
    """Environment for a client process: this Hub, its own HF home and quantpress cache, no token."""
    return {"HF_ENDPOINT": url, "HF_HUB_OFFLINE": offline, "QUANTPRESS_CACHE_DIR": str(home / "qp"),
            "HF_HOME": str(home / "hf"), "HF_HUB_CACHE": str(home / "hf" / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1"}


def configure_client(monkeypatch: pytest.MonkeyPatch, url: str, home: Path) -> None:
    """Point this process's huggingface_hub at the fake Hub. The environment covers child processes;
    huggingface_hub read its constants when first imported (the suite's conftest sets HF_HUB_OFFLINE=1
    before that), so the same settings are also put on ``huggingface_hub.constants``."""
    from huggingface_hub import constants, hf_api

    env = client_env(url, home)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_api.api, "endpoint", url)  # the instance behind module-level whoami() (login)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "hf" / "stored_tokens"))


def serving(repos: dict[str, Path], gated: set[str] | None = None) -> Iterator[FakeHub]:
    """A fixture body: the fake Hub while the fixture lives, shut down after."""
    server = start_hub(repos, gated=gated)
    yield server
    server.shutdown()
    server.server_close()
