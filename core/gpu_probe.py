"""llama.cpp's GPU runtime overhead, measured once per GPU, driver and llama.cpp build, and cached.

    result = probe_gpu()                 # `quantpress doctor --gpu-probe`, "Measure my GPU"
    use = measure_gpu_use(gguf, n_ctx)   # benchmarks/vram.py: NVML used peak of one load + eval

VRAM of a full offload = llama.cpp's device buffers (model, KV, compute: ``estimate.gpu_buffers_bytes``)
+ a runtime overhead no formula gives (CUDA context, cuBLAS, ggml's CUDA pool; ~706 MiB on an H200,
issue 17). The probe loads the demo model's GGUF with every layer on the GPU and evaluates 512 tokens
in a fresh child process while *this* process samples NVML's "used" figure; the overhead is the peak
minus "used" before the child started, minus the buffers, plus a margin (so the estimate of the probe
run itself is never below what it used). The child never touches NVML: the process that initialises
CUDA does nothing else first (issue 17's chat crash followed an NVML call in that process).

The result is cached as JSON under the user cache folder, keyed by backend, GPU name, driver and
llama-cpp-python version; ``detect_hardware`` puts it on the matching ``Gpu.runtime_bytes``.
NVIDIA only (NVML); other GPUs keep their backend's default (``memory.GPU_RUNTIME_DEFAULT_BYTES``).
Everything NVML is behind :func:`open_nvml` (the boundary tests fake).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from quantpress.core.errors import QuantpressError
from quantpress.core.hardware import Gpu

MIB = 1024**2
PROBE_CTX = 4096
EVAL_TOKENS = 512
T = TypeVar("T")
SAMPLE_S = 0.005  # NVML "used" is sampled this often while the child runs
HOLD_S = 0.5  # the child keeps its memory this long after the eval, so the sampler sees the plateau
MARGIN_BYTES = 64 * MIB  # added to the measured overhead: the estimate stays above the measured use
TIMEOUT_S = 600.0
CACHE_NAME = "gpu_runtime.json"


class GpuProbeError(QuantpressError):
    """The GPU could not be measured (no NVIDIA GPU, a CPU build of llama.cpp, a failed load)."""


class Nvml(Protocol):
    """What the probe needs from NVML (``open_nvml``; tests pass a fake)."""

    def devices(self) -> list[tuple[str, int]]: ...  # (name, total bytes) per device

    def driver(self) -> str: ...

    def used_bytes(self, index: int) -> int: ...

    def close(self) -> None: ...


class _Pynvml:
    def __init__(self, pynvml: Any) -> None:
        self._n = pynvml

    def devices(self) -> list[tuple[str, int]]:
        out = []
        for i in range(self._n.nvmlDeviceGetCount()):
            h = self._n.nvmlDeviceGetHandleByIndex(i)
            out.append((_text(self._n.nvmlDeviceGetName(h)), int(self._n.nvmlDeviceGetMemoryInfo(h).total)))
        return out

    def driver(self) -> str:
        return _text(self._n.nvmlSystemGetDriverVersion())

    def used_bytes(self, index: int) -> int:
        return int(self._n.nvmlDeviceGetMemoryInfo(self._n.nvmlDeviceGetHandleByIndex(index)).used)

    def close(self) -> None:
        self._n.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_nvml() -> Nvml | None:
    """NVML, initialised; None where there is no NVIDIA driver or no nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver / no GPU: the normal case on most machines
        return None
    return _Pynvml(pynvml)


# ----------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class GpuUse:
    """One measured run: NVML "used" before the child started and its peak while it ran."""

    gguf: str
    n_ctx: int
    before_bytes: int
    peak_bytes: int
    gpu_offload: bool  # llama.cpp in the child could offload (False: a CPU build, the figure means nothing)
    llama_cpp_version: str
    logged_buffers: dict[str, int] = field(default_factory=dict)  # llama.cpp's own "<dev> <kind> buffer size"

    @property
    def used_bytes(self) -> int:
        return max(0, self.peak_bytes - self.before_bytes)


_BUFFER_LINE = re.compile(r"(\S+) (model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")


def parse_buffer_log(text: str) -> dict[str, int]:
    """llama.cpp's load log -> {"CUDA0 model": bytes, "CUDA0 KV": ..., "CUDA0 compute": ...} (summed
    where a line repeats)."""
    out: dict[str, int] = {}
    for dev, kind, mib in _BUFFER_LINE.findall(text):
        out[f"{dev} {kind}"] = out.get(f"{dev} {kind}", 0) + int(float(mib) * MIB)
    return out


def peak_used_during(nvml: Nvml, device: int, work: Callable[[], T]) -> tuple[T, int, int]:
    """Run ``work()`` while sampling NVML's "used" on ``device`` every SAMPLE_S: (its result, used
    before it started, peak used while it ran)."""
    before = peak = nvml.used_bytes(device)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, nvml.used_bytes(device))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, name="nvml-sampler", daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return result, before, max(peak, nvml.used_bytes(device))


def measure_gpu_use(gguf: str | Path, n_ctx: int, *, device: int = 0, n_eval: int = EVAL_TOKENS,
                    nvml: Nvml | None = None, timeout_s: float = TIMEOUT_S) -> GpuUse:
    """Load ``gguf`` with every layer on the GPU in a fresh child process, evaluate ``n_eval``
    tokens, and return NVML's "used" before the child and its peak while the child ran."""
    own = nvml is None
    nvml = nvml or open_nvml()
    if nvml is None:
        raise GpuProbeError("No NVIDIA GPU found (NVML is not available): the probe measures NVIDIA GPUs only.")
    try:
        out, before, peak = peak_used_during(nvml, device, lambda: subprocess.run(
            [sys.executable, "-m", "quantpress.core.gpu_probe", str(gguf), str(n_ctx), str(n_eval)],
            capture_output=True, text=True, timeout=timeout_s, check=False))
    finally:
        if own:
            nvml.close()
    if out.returncode != 0:
        raise GpuProbeError(f"Loading {Path(gguf).name} on the GPU failed (exit {out.returncode}): "
                            f"{out.stderr.strip()[-600:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return GpuUse(str(gguf), n_ctx, before, peak, bool(report["gpu_offload"]), str(report["llama_cpp_version"]),
                  parse_buffer_log(out.stderr))


def _child(gguf: str, n_ctx: int, n_eval: int) -> None:
    """The measured process: no NVML here. llama.cpp's log (verbose) goes to stderr for the parent."""
    import llama_cpp

    llm = llama_cpp.Llama(gguf, n_ctx=n_ctx, n_gpu_layers=-1)  # n_batch 512: llama-cpp-python's default
    n_vocab = llm.n_vocab()
    llm.eval([3 + (i * 7919) % (n_vocab - 3) for i in range(min(n_eval, n_ctx))])
    time.sleep(HOLD_S)
    sys.stdout.write(json.dumps({"gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                                 "llama_cpp_version": str(getattr(llama_cpp, "__version__", "unknown"))}) + "\n")
    sys.stdout.flush()
    llm.close()


# ----------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class GpuOverhead:
    """The measured runtime overhead of one GPU + driver + llama.cpp build."""

    key: str
    gpu_name: str
    driver: str
    llama_cpp_version: str
    overhead_bytes: int  # what the estimate adds: measured - buffers + MARGIN_BYTES (at least the margin)
    measured_bytes: int  # NVML used peak - before, of the probe run
    buffers_bytes: int  # the estimate's model + KV + compute terms for the probe run
    probe_model: str
    n_ctx: int
    measured_at: str
    logged_buffers: dict[str, int] = field(default_factory=dict)


def llama_cpp_version() -> str:
    """llama-cpp-python's installed version, without importing it (importing may initialise CUDA)."""
    from importlib import metadata

    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "none"


def gpu_key(backend: str, name: str, driver: str, llama_version: str) -> str:
    return f"{backend}|{name}|{driver}|llama-cpp-python {llama_version}"


def cache_path() -> Path:
    from quantpress.core.paths import cache_dir

    return cache_dir() / CACHE_NAME


def load_cache() -> dict[str, GpuOverhead]:
    try:
        data = json.loads(cache_path().read_text())
        return {k: GpuOverhead(**v) for k, v in data.items()}
    except (OSError, ValueError, TypeError):  # none yet, or unreadable: unmeasured
        return {}


def save(result: GpuOverhead) -> None:
    cache = load_cache()
    cache[result.key] = result
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: dataclasses.asdict(v) for k, v in cache.items()}, indent=1))
    tmp.replace(path)


def with_measured_overhead(gpu: Gpu) -> Gpu:
    """``gpu`` with ``runtime_bytes`` from the cache when this GPU, driver and llama.cpp were measured."""
    if gpu.backend != "cuda" or not gpu.driver:
        return gpu
    hit = load_cache().get(gpu_key(gpu.backend, gpu.name, gpu.driver, llama_cpp_version()))
    return dataclasses.replace(gpu, runtime_bytes=hit.overhead_bytes) if hit else gpu


# ----------------------------------------------------------------------------- the probe


def probe_gpu(gguf: str | Path | None = None, *, n_ctx: int = PROBE_CTX, device: int = 0,
              nvml: Nvml | None = None, allow_cpu_build: bool = False) -> GpuOverhead:
    """Measure the runtime overhead of GPU ``device`` (the demo model's GGUF by default), cache it and
    return it. ``allow_cpu_build`` measures even where llama.cpp cannot offload (tests only: the
    figure then says nothing about a GPU)."""
    from datetime import datetime, timezone

    from quantpress.core.estimate import gpu_buffers_bytes
    from quantpress.core.inspect import open_model
    from quantpress.core.memory import RuntimeConfig

    own = nvml is None
    nvml = nvml or open_nvml()
    if nvml is None:
        raise GpuProbeError("No NVIDIA GPU found (NVML is not available): nothing to measure. The memory "
                            "estimate keeps its conservative default for this GPU's backend.")
    try:
        if gguf is None:
            from quantpress.core.demo import demo_gguf_path

            gguf = demo_gguf_path()
        devices = nvml.devices()
        if device >= len(devices):
            raise GpuProbeError(f"There is no GPU {device}: NVML lists {len(devices)}.")
        name, driver = devices[device][0], nvml.driver()
        use = measure_gpu_use(gguf, n_ctx, device=device, nvml=nvml)
    finally:
        if own:
            nvml.close()
    if not use.gpu_offload and not allow_cpu_build:
        raise GpuProbeError("This llama-cpp-python is a CPU build (no GPU offload), so its GPU memory cannot "
                            "be measured. Install a GPU build (README, GPU notes) and measure again.")
    buffers = gpu_buffers_bytes(open_model(Path(gguf)), RuntimeConfig(n_ctx=n_ctx))
    version = llama_cpp_version()  # the cache key's (the child's __version__ is kept in use)
    result = GpuOverhead(
        key=gpu_key("cuda", name, driver, version), gpu_name=name, driver=driver, llama_cpp_version=version, overhead_bytes=max(0, use.used_bytes - buffers) + MARGIN_BYTES,
        measured_bytes=use.used_bytes, buffers_bytes=buffers, probe_model=Path(gguf).name, n_ctx=n_ctx,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), logged_buffers=use.logged_buffers)
    save(result)
    return result


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
