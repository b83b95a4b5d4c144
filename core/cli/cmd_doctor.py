"""``quantpress doctor``: versions, backends and detected hardware, to diagnose an install."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from quantpress.core.cli.output import format_bytes, print_json, to_jsonable

ORDER = 90


@dataclass(frozen=True)
class Component:
    name: str
    version: str | None  # None: not installed
    details: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch() -> Component:
    version = _dist_version("torch")
    if version is None:
        return Component("torch", None, problem="not installed: calibration and AWQ need it")
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
        details: dict[str, Any] = {"cuda_available": cuda, "cuda_build": torch.version.cuda}
        if cuda:
            details["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        details["mps_available"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        return Component("torch", version, details)
    except Exception as exc:  # a broken install is exactly what doctor must report, not crash on
        return Component("torch", version, problem=f"import failed: {exc}")


def _llama_cpp() -> Component:
    version = _dist_version("llama_cpp_python")
    if version is None:
        return Component("llama-cpp-python", None, problem="not installed: chat, evaluation and quantization need it")
    try:
        import llama_cpp

        details: dict[str, Any] = {"gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}
        info = llama_cpp.llama_print_system_info()
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
        details["system_info"] = text.strip()
        backends = [b for b in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL") if b.lower() in text.lower()]
        details["gpu_backend"] = ", ".join(backends) if backends else "none (CPU build)"
        return Component("llama-cpp-python", version, details)
    except Exception as exc:
        return Component("llama-cpp-python", version, problem=f"import failed: {exc}")


def _native() -> Component:
    try:
        native = importlib.import_module("quantpress.native")
        return Component("quantpress.native", _dist_version("quantpress"), dict(native.build_info()))
    except Exception as exc:
        return Component("quantpress.native", None, problem=f"native extension failed to load: {exc}; reinstall with ./setup.sh")


def _simple(name: str, dist: str) -> Component:
    version = _dist_version(dist)
    return Component(name, version, problem="" if version else "not installed")


def _qt_x11() -> Component:
    from quantpress.core.desktop import missing_xcb_libraries, xcb_plugin, xcb_problem

    plugin = xcb_plugin()
    if plugin is None:
        return Component("Qt X11 plugin", None, problem="" if sys.platform != "linux" else "PySide6 has no xcb plugin")
    return Component("Qt X11 plugin", "present", {"path": str(plugin)}, problem=xcb_problem(missing_xcb_libraries(plugin)))


def _hardware() -> dict[str, Any]:
    try:
        from quantpress.core.hardware import detect_hardware

        return dict(to_jsonable(detect_hardware()))
    except Exception as exc:  # doctor must work even if detection breaks
        import psutil

        return {"ram_total_bytes": psutil.virtual_memory().total, "problem": f"hardware detection failed: {exc}"}


def collect() -> dict[str, Any]:
    components = [
        Component("python", platform.python_version(), {"executable": sys.executable, "platform": platform.platform()}),
        _simple("quantpress", "quantpress"),
        _native(),
        _torch(),
        _llama_cpp(),
        _simple("gguf", "gguf"),
        _simple("PySide6", "PySide6-Essentials") if _dist_version("PySide6-Essentials") else _simple("PySide6", "PySide6"),
        _simple("transformers", "transformers"),
        _simple("huggingface_hub", "huggingface_hub"),
        _simple("safetensors", "safetensors"),
        _simple("tokenizers", "tokenizers"),
        _simple("numpy", "numpy"),
        _qt_x11(),
    ]
    return {"components": [to_jsonable(c) for c in components], "hardware": _hardware()}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="show versions, GPU backends and detected hardware")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gpu-probe", action="store_true",
                   help="measure llama.cpp's GPU runtime overhead on this NVIDIA GPU (loads the demo model with every "
                        "layer on the GPU in a child process) and cache it for the memory estimate; once per GPU, "
                        "driver and llama-cpp-python version")
    p.set_defaults(func=run)


def _print_text(report: dict[str, Any]) -> None:
    for c in report["components"]:
        version = c["version"] or "missing"
        print(f"{c['name']:<20} {version}")
        for key, value in c["details"].items():
            if key != "system_info":
                print(f"{'':<22}{key}: {value}")
        if c["problem"]:
            print(f"{'':<22}problem: {c['problem']}")
    hw = report["hardware"]
    print("hardware")
    for key, value in hw.items():
        shown = format_bytes(value) if key.endswith("_bytes") and isinstance(value, int) else value
        print(f"{'':<22}{key}: {shown}")


def _gpu_probe(as_json: bool) -> int:
    from quantpress.core.gpu_probe import cache_path, probe_gpu

    result = probe_gpu()
    if as_json:
        print_json(result)
        return 0
    print(f"{result.gpu_name} (driver {result.driver}, llama-cpp-python {result.llama_cpp_version})")
    print(f"  measured use      {format_bytes(result.measured_bytes)}  ({result.probe_model}, n_ctx {result.n_ctx}, "
          "every layer on the GPU, one 512-token batch)")
    print(f"  llama.cpp buffers {format_bytes(result.buffers_bytes)}  (model + KV + compute, as estimated)")
    print(f"  runtime overhead  {format_bytes(result.overhead_bytes)}  (measured - buffers + margin; "
          f"now used by every estimate on this GPU)")
    print(f"  cached in {cache_path()}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.gpu_probe:
        return _gpu_probe(args.json)
    report = collect()
    if args.json:
        print_json(report)
    else:
        _print_text(report)
    problems = [c for c in report["components"] if c["problem"] and c["name"] in ("quantpress.native", "llama-cpp-python")]
    return 1 if problems else 0
