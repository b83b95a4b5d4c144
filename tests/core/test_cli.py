"""The `quantpress` command itself: version, help, doctor."""

from __future__ import annotations

import json
import subprocess
import sys

from quantpress.core.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantpress.core.cli", *args], capture_output=True, text=True, check=False
    )


def test_version() -> None:
    out = _run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("quantpress ")


def test_doctor_json_reports_components_and_hardware() -> None:
    out = _run("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = {c["name"]: c for c in report["components"]}
    for required in ("python", "quantpress.native", "torch", "llama-cpp-python", "gguf", "PySide6"):
        assert names[required]["version"], required
    assert names["quantpress.native"]["details"]["threads_available"] >= 1
    assert "gpu_backend" in names["llama-cpp-python"]["details"]
    assert "cuda_available" in names["torch"]["details"]
    assert report["hardware"]["ram_total_bytes"] > 0


def test_unknown_command_is_a_usage_error(capsys: object) -> None:
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("argparse should have rejected the command")
