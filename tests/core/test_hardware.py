"""Hardware detection on this machine plus the vendor probes against fake sysfs/cpuinfo files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from quantpress.core.hardware import GIB, Hardware, _amd, apple_metal_budget, cpu_flags, detect_hardware


def test_detect_this_machine() -> None:
    hw = detect_hardware()
    assert isinstance(hw, Hardware)
    assert hw.ram_total_bytes > GIB and 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.cpu_cores >= 1 and all(isinstance(f, str) for f in hw.cpu_flags)
    for g in hw.gpus:
        assert g.vram_total_bytes >= g.vram_free_bytes >= 0


def test_detection_does_not_import_torch() -> None:
    code = "import sys; from quantpress.core.hardware import detect_hardware; detect_hardware(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_what_if_overrides() -> None:
    hw = detect_hardware().with_overrides(vram_gib=24, ram_gib=64)
    assert hw.vram_total_bytes == 24 * GIB == hw.vram_free_bytes and len(hw.gpus) == 1
    assert hw.ram_total_bytes == hw.ram_available_bytes == 64 * GIB
    assert set(hw.overridden) == {"vram", "ram"}
    assert hw.with_overrides(vram_gib=0).gpus == ()


def test_amd_sysfs(tmp_path: Path) -> None:
    dev = tmp_path / "card0" / "device"
    dev.mkdir(parents=True)
    (dev / "mem_info_vram_total").write_text(str(16 * GIB))
    (dev / "mem_info_vram_used").write_text(str(GIB))
    (dev / "product_name").write_text("Radeon RX 7800 XT\n")
    (tmp_path / "card1" / "device").mkdir(parents=True)  # an iGPU/other vendor without the files
    gpus = _amd(tmp_path)
    assert len(gpus) == 1 and gpus[0].name == "Radeon RX 7800 XT" and gpus[0].backend == "rocm"
    assert gpus[0].vram_total_bytes == 16 * GIB and gpus[0].vram_free_bytes == 15 * GIB


def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu pni ssse3 avx avx2 fma f16c avx512f\n")
    assert cpu_flags(info) == ("sse3", "ssse3", "avx", "avx2", "f16c", "fma", "avx512f")
    arm = tmp_path / "arm"
    arm.write_text("Features\t: fp asimd asimddp i8mm\n")
    assert cpu_flags(arm) == ("asimd", "dotprod", "i8mm")


def test_apple_metal_budget_rule() -> None:
    assert apple_metal_budget(16 * 10**9) == 16 * 10**9 * 2 // 3
    assert apple_metal_budget(64 * 10**9) == 64 * 10**9 * 3 // 4
