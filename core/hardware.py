"""What this machine has for running a model: RAM, GPUs (NVIDIA, AMD, Apple unified memory), CPU.

    hw = detect_hardware()
    hw.with_overrides(vram_gib=24)      # "what if I had a 24 GiB GPU" (planning)

Cheap and safe: NVML is imported lazily (nvidia-ml-py), torch.cuda is consulted only if torch is
already imported (importing torch just to look costs seconds), AMD comes from sysfs
(``/sys/class/drm/card*/device/mem_info_vram_*``, the amdgpu driver's files) and Apple from sysctl.
Every probe failing just means "not found".
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3

# The SIMD features llama.cpp's CPU backend cares about (ggml-cpu feature list).
SIMD_FLAGS = ("sse3", "ssse3", "avx", "avx2", "f16c", "fma", "avx512f", "avx512bw", "avx512vnni", "avx_vnni",
              "amx_int8", "neon", "asimd", "sve", "dotprod", "i8mm")


@dataclass(frozen=True)
class Gpu:
    """One GPU. ``runtime_bytes``: llama.cpp's runtime overhead on it (CUDA context, cuBLAS, memory
    pools) as measured by ``quantpress doctor --gpu-probe`` for this GPU, driver and llama.cpp
    build (core/gpu_probe.py); None when unmeasured (the estimate then uses the backend's
    conservative default, ``memory.GPU_RUNTIME_DEFAULT_BYTES``)."""

    name: str
    vram_total_bytes: int
    vram_free_bytes: int
    backend: str  # 'cuda', 'rocm', 'metal', 'override'
    driver: str = ""  # NVIDIA driver version (NVML); empty where unknown
    runtime_bytes: int | None = None


@dataclass(frozen=True)
class Hardware:
    ram_total_bytes: int
    ram_available_bytes: int
    cpu_cores: int  # physical cores (logical if unknown)
    cpu_flags: tuple[str, ...]
    gpus: tuple[Gpu, ...] = ()
    unified_memory: bool = False  # Apple Silicon: the GPU's memory is a share of RAM
    overridden: tuple[str, ...] = ()  # which fields are "what if" values, not detected

    @property
    def vram_total_bytes(self) -> int:
        return sum(g.vram_total_bytes for g in self.gpus)

    @property
    def vram_free_bytes(self) -> int:
        return sum(g.vram_free_bytes for g in self.gpus)

    def with_overrides(self, *, vram_gib: float | None = None, ram_gib: float | None = None) -> Hardware:
        """A copy as if the machine had one GPU of ``vram_gib`` GiB (0: no GPU) and/or ``ram_gib`` GiB
        of RAM (all of it free: planning assumes nothing else runs)."""
        hw, changed = self, list(self.overridden)
        if ram_gib is not None:
            n = int(ram_gib * GIB)
            hw = dataclasses.replace(hw, ram_total_bytes=n, ram_available_bytes=n)
            changed.append("ram")
        if vram_gib is not None:
            n = int(vram_gib * GIB)
            gpus = (Gpu(f"{vram_gib:g} GiB GPU (what-if)", n, n, "override"),) if n > 0 else ()
            hw = dataclasses.replace(hw, gpus=gpus, unified_memory=False)
            changed.append("vram")
        return dataclasses.replace(hw, overridden=tuple(dict.fromkeys(changed)))


# ----------------------------------------------------------------------------- probes


def _nvidia() -> list[Gpu]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return _torch_cuda()
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no GPU: the normal case on most machines
        return _torch_cuda()
    try:
        out = []
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append(Gpu(_text(pynvml.nvmlDeviceGetName(h)), int(mem.total), int(mem.free), "cuda", driver))
        return out
    except Exception:
        return _torch_cuda()
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_cuda() -> list[Gpu]:
    torch = sys.modules.get("torch")  # only if already imported: never pay torch's import to look
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out.append(Gpu(torch.cuda.get_device_name(i), int(total), int(free), "cuda"))
        return out
    except Exception:
        return []


def _amd(drm: Path = Path("/sys/class/drm")) -> list[Gpu]:
    """amdgpu exposes mem_info_vram_total/used in bytes per card (kernel amdgpu sysfs docs)."""
    out = []
    for dev in sorted(drm.glob("card[0-9]*/device")):
        total_f, used_f = dev / "mem_info_vram_total", dev / "mem_info_vram_used"
        try:
            total = int(total_f.read_text().strip())
            used = int(used_f.read_text().strip()) if used_f.exists() else 0
        except (OSError, ValueError):
            continue
        if total > 0:
            name = _read(dev / "product_name") or f"AMD GPU ({dev.parent.name})"
            out.append(Gpu(name, total, max(0, total - used), "rocm"))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def apple_metal_budget(ram_bytes: int) -> int:
    """The share of unified memory Metal lets one process use (recommendedMaxWorkingSetSize).

    Apple does not document the formula; measured values (llama.cpp's Metal backend logs it, e.g.
    ggml-org/llama.cpp discussions #2182, #4167) are about 2/3 of RAM up to 36 GB machines and
    about 3/4 above, which is also the rule LM Studio and Ollama use. We use that rule."""
    return ram_bytes * 2 // 3 if ram_bytes <= 36 * 10**9 else ram_bytes * 3 // 4


def _apple(ram_total: int, ram_available: int) -> list[Gpu]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return []
    try:
        brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                               timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        brand = "Apple Silicon"
    budget = apple_metal_budget(ram_total)
    return [Gpu(brand or "Apple Silicon", budget, min(budget, ram_available), "metal")]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """SIMD flags from /proc/cpuinfo (Linux), sysctl (macOS); empty if unknown."""
    found: set[str] = set()
    text = _read(cpuinfo)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    if "pni" in found:  # Linux calls SSE3 "pni" (Prescott New Instructions)
        found.add("sse3")
    if "asimddp" in found:  # and ARM's dot-product extension "asimddp"
        found.add("dotprod")
    if not text and sys.platform == "darwin":
        found.update({"neon", "asimd", "dotprod"} if platform.machine() == "arm64" else set())
    return tuple(f for f in SIMD_FLAGS if f in found)


def detect_hardware() -> Hardware:
    """Probe RAM, GPUs and CPU (fast: no torch import, no subprocess on Linux)."""
    import psutil

    vm = psutil.virtual_memory()
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    gpus = _nvidia() or _amd()
    apple = _apple(int(vm.total), int(vm.available))
    from quantpress.core.gpu_probe import with_measured_overhead

    return Hardware(ram_total_bytes=int(vm.total), ram_available_bytes=int(vm.available), cpu_cores=int(cores),
                    cpu_flags=cpu_flags(), gpus=tuple(with_measured_overhead(g) for g in gpus or apple),
                    unified_memory=bool(apple) and not gpus)
