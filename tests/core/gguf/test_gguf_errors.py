"""Bad input: each a clear error, no file left behind, the source untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.errors import Cancelled, InvalidModel, NotEnoughDiskSpace, UnsupportedArchitecture
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.source import open_source
from quantpress.core.jobs import CancelToken, Progress


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst)
    return dst


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.suffix in (".gguf", ".json") or "partial" in p.name]


def test_unsupported_architecture(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = _copy(tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match="MambaForCausalLM.*supported: .*LlamaForCausalLM"):
        plan_conversion(open_source(folder), ["Q4_K_M"], tmp_path)


def test_missing_tokenizer(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = _copy(tiny("llama"), tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InvalidModel, match="no tokenizer"):
        plan_conversion(open_source(folder), ["Q4_K_M"], tmp_path)


def test_missing_shard(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = _copy(tiny("qwen2"), tmp_path / "m")
    (folder / "model-00003-of-00011.safetensors").unlink()
    with pytest.raises(InvalidModel, match="1 of 11 weight shards are missing.*00003"):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


def test_nan_weights_name_the_tensor(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from quantpress.core.gguf.source import read_safetensors_header

    folder = _copy(tiny("qwen3"), tmp_path / "m")  # bf16
    bad = "model.layers.1.mlp.down_proj.weight"
    header, start = read_safetensors_header(folder / "model.safetensors")
    offset = start + header[bad]["data_offsets"][0] + 2 * 5
    with (folder / "model.safetensors").open("r+b") as f:  # element 5 := bf16 NaN
        f.seek(offset)
        f.write(np.array([0x7FC0], dtype="<u2").tobytes())
    before = _digest(folder)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidModel, match=f"'{bad}' contains NaN"):
        convert(plan_conversion(open_source(folder), ["Q4_K_M", "F16"], out))
    assert _leftovers(out) == []
    assert _digest(folder) == before


def test_disk_full_preflight(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    plan = plan_conversion(open_source(tiny("llama")), ["F32"], tmp_path)
    with pytest.raises(NotEnoughDiskSpace, match="needs .* MiB but only 0 MiB are free"):
        convert(plan, disk_free=lambda _p: 1000)
    assert _leftovers(tmp_path) == []


def test_disk_full_while_writing_real_enospc(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """A real write failure: RLIMIT_FSIZE makes the kernel refuse writes past 1 MB (EFBIG)."""
    folder = tiny("llama")
    out = tmp_path / "out"
    out.mkdir()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        from quantpress.core.errors import NotEnoughDiskSpace
        from quantpress.core.gguf.convert import convert
        from quantpress.core.gguf.plan import plan_conversion
        from quantpress.core.gguf.source import open_source
        plan = plan_conversion(open_source({str(folder)!r}), ["F32"], __import__("pathlib").Path({str(out)!r}))
        try:
            convert(plan)
        except NotEnoughDiskSpace as exc:
            print("NotEnoughDiskSpace:", exc)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "disk filled up" in proc.stdout
    assert _leftovers(out) == []


def test_cancel_at_half_leaves_nothing(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tiny("llama")
    before = _digest(folder)
    plan = plan_conversion(open_source(folder), ["Q4_K_M", "Q8_0"], tmp_path)
    token = CancelToken()
    seen: list[float] = []

    def report(p: Progress) -> None:
        seen.append(p.fraction)
        if p.fraction >= 0.5:
            token.cancel()

    with pytest.raises(Cancelled):
        convert(plan, report=report, cancel=token)
    assert 0.5 <= max(seen) < 1.0
    assert _leftovers(tmp_path) == []
    assert _digest(folder) == before


def test_cancel_from_another_thread(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    plan = plan_conversion(open_source(tiny("gemma3")), ["Q6_K"], tmp_path)
    token = CancelToken()
    timer = threading.Timer(0.0, token.cancel)
    timer.start()
    timer.join()
    with pytest.raises(Cancelled):
        convert(plan, cancel=token)
    assert _leftovers(tmp_path) == []
