"""The GPU runtime-overhead probe and its cache, on the CPU: NVML is faked (its "used" figure rises
while the child runs), everything else is real (the child process loads the demo GGUF with
llama-cpp-python and evaluates tokens, the estimator computes the buffers, the cache is a file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from quantpress.core import gpu_probe
from quantpress.core.estimate import estimate, gpu_buffers_bytes
from quantpress.core.hardware import Gpu, Hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import GPU_RUNTIME_DEFAULT_BYTES, MIB, RuntimeConfig

GIB = 1024**3
N_CTX = 512  # small: the child evaluates min(512, n_ctx) tokens on a busy 2-core CPU
NAME, DRIVER = "NVIDIA Fake H200", "580.65.06"


class FakeNvml:
    """One GPU whose "used" reads ``base`` first (before the child starts), then ``base + rise``."""

    def __init__(self, rise: int, base: int = 3 * GIB) -> None:
        self.base, self.rise, self.reads, self.closed = base, rise, 0, False

    def devices(self) -> list[tuple[str, int]]:
        return [(NAME, 141 * GIB)]

    def driver(self) -> str:
        return DRIVER

    def used_bytes(self, index: int) -> int:
        assert index == 0
        self.reads += 1
        return self.base if self.reads == 1 else self.base + self.rise

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUANTPRESS_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def demo_gguf() -> Path:
    from quantpress.core.demo import demo_gguf_path

    return demo_gguf_path()


def _gpu(driver: str = DRIVER) -> Gpu:
    return gpu_probe.with_measured_overhead(Gpu(NAME, 141 * GIB, 140 * GIB, "cuda", driver))


def _vram(gguf: Path, gpu: Gpu, n_ctx: int = N_CTX) -> int:
    hw = Hardware(64 * GIB, 60 * GIB, 8, (), (gpu,))
    row = estimate(open_model(gguf), hw, RuntimeConfig(n_ctx=n_ctx), formats=[]).formats[0]
    assert row.fit == "gpu"
    return row.vram_bytes


def test_probe_measures_caches_and_the_estimate_holds(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffers = gpu_buffers_bytes(open_model(demo_gguf), RuntimeConfig(n_ctx=N_CTX))
    nvml = FakeNvml(rise=buffers + 406 * MIB)
    monkeypatch.setattr(gpu_probe, "open_nvml", lambda: nvml)
    assert _gpu().runtime_bytes is None  # unmeasured: the backend default applies
    assert _vram(demo_gguf, _gpu()) == buffers + GPU_RUNTIME_DEFAULT_BYTES["cuda"]

    result = gpu_probe.probe_gpu(demo_gguf, n_ctx=N_CTX, allow_cpu_build=True)
    assert nvml.closed and nvml.reads >= 3  # before, samples while the child ran, after
    assert result.measured_bytes == buffers + 406 * MIB and result.buffers_bytes == buffers
    assert result.overhead_bytes == 406 * MIB + gpu_probe.MARGIN_BYTES
    assert result.gpu_name == NAME and result.driver == DRIVER
    assert "CPU model" in result.logged_buffers or "CPU_Mapped model" in result.logged_buffers  # llama.cpp's log

    # cached per GPU + driver + llama.cpp build, read back by hardware detection
    assert gpu_probe.cache_path().is_file()
    assert gpu_probe.load_cache()[result.key] == result
    assert _gpu().runtime_bytes == result.overhead_bytes
    assert _gpu(driver="999.0").runtime_bytes is None  # another driver: unmeasured
    # the estimate of the measured run is never below what it used, and close to it
    vram = _vram(demo_gguf, _gpu())
    assert result.measured_bytes <= vram <= result.measured_bytes + gpu_probe.MARGIN_BYTES


def test_overhead_is_never_negative(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_probe, "open_nvml", lambda: FakeNvml(rise=10 * MIB))
    result = gpu_probe.probe_gpu(demo_gguf, n_ctx=N_CTX, allow_cpu_build=True)
    assert result.overhead_bytes == gpu_probe.MARGIN_BYTES


def test_a_cpu_build_is_refused(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_probe, "open_nvml", lambda: FakeNvml(rise=GIB))
    with pytest.raises(gpu_probe.GpuProbeError, match="CPU build"):
        gpu_probe.probe_gpu(demo_gguf, n_ctx=N_CTX)
    assert gpu_probe.load_cache() == {}


def test_no_nvidia_gpu_says_so() -> None:
    if gpu_probe.open_nvml() is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(gpu_probe.GpuProbeError, match="No NVIDIA GPU"):
        gpu_probe.probe_gpu()


def test_detect_hardware_applies_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantpress.core import hardware

    key = gpu_probe.gpu_key("cuda", NAME, DRIVER, gpu_probe.llama_cpp_version())
    gpu_probe.save(gpu_probe.GpuOverhead(key, NAME, DRIVER, gpu_probe.llama_cpp_version(), 700 * MIB, 0, 0, "x", 1,
                                         "now"))
    monkeypatch.setattr(hardware, "_nvidia", lambda: [Gpu(NAME, 141 * GIB, 140 * GIB, "cuda", DRIVER)])
    [gpu] = hardware.detect_hardware().gpus
    assert gpu.runtime_bytes == 700 * MIB
    assert dataclasses.replace(gpu, runtime_bytes=None) == Gpu(NAME, 141 * GIB, 140 * GIB, "cuda", DRIVER)


def test_defaults_per_backend() -> None:
    from quantpress.core.memory import gpu_runtime_bytes

    assert gpu_runtime_bytes(()) == GPU_RUNTIME_DEFAULT_BYTES["cuda"] >= 706 * MIB  # issue 17's H200 figure
    assert gpu_runtime_bytes((Gpu("M3", 1, 1, "metal"),)) == GPU_RUNTIME_DEFAULT_BYTES["metal"]
    assert gpu_runtime_bytes((Gpu("x", 1, 1, "cuda", "1", runtime_bytes=5),)) == 5


def test_buffer_log_parsing() -> None:
    log = ("load_tensors:        CUDA0 model buffer size =   636.50 MiB\n"
           "load_tensors:   CPU_Mapped model buffer size =    96.00 MiB\n"
           "llama_kv_cache:      CUDA0 KV buffer size =   128.00 MiB\n"
           "llama_context:      CUDA0 compute buffer size =   100.25 MiB\n"
           "llama_context:  CUDA_Host compute buffer size =    12.01 MiB\n")
    parsed = gpu_probe.parse_buffer_log(log)
    assert parsed["CUDA0 model"] == int(636.5 * MIB) and parsed["CUDA0 KV"] == 128 * MIB
    assert parsed["CUDA0 compute"] == int(100.25 * MIB) and "CUDA_Host compute" in parsed


def test_doctor_gpu_probe_without_an_nvidia_gpu_says_so() -> None:
    import subprocess
    import sys

    if gpu_probe.open_nvml() is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "doctor", "--gpu-probe"], capture_output=True,
                         text=True, check=False, timeout=120)
    assert out.returncode == 2 and "No NVIDIA GPU found" in out.stderr and not out.stdout
