"""What a per-tensor type choice must stay under: a file size, bits per weight, or the memory of a
GPU (or of RAM) at a context length, and what each tensor's type costs against it.

    Target.size(parse_size("4.5GB")), Target.bpw(4.3), Target.fit("gpu", ctx_tokens=8192, kv_type="q8_0")

File sizes are exact (core/gguf/layout.py: metadata + each tensor padded to the alignment). Memory is
the estimator's (core/estimate.py, core/memory.py): weights on the device plus KV cache, compute
buffer and overhead at the context, which do not depend on the weight types; only the weights'
share changes with the types, tensor by tensor: on a GPU every block and the output layer (the
token embedding stays on the CPU unless it is tied to the output), in RAM every tensor once plus
the CPU backend's repacked copy of the types it repacks (core/memory.py REPACK_TYPES).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from quantpress.core import memory as mem
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf import layout
from quantpress.core.hardware import Hardware

KINDS = ("size", "bpw", "fit-gpu", "fit-ram")
# Decimal units as disks and download pages count (GB = 10^9), binary ones as memory is reported (GiB).
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "K": 1024, "M": 1024**2,
          "G": 1024**3, "T": 1024**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(text: str) -> int:
    """'4.5GB' (10^9), '4.5GiB' or '4.5G' (2^30), '700MB', '123456' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise InvalidInput(f"'{text}' is not a size; write it like 4.5GB, 700MB or 3.2GiB")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise InvalidInput(f"'{text}': the size must be positive")
    return n


@dataclass(frozen=True)
class Target:
    """One of: ``size_bytes`` (the whole file), ``bits_per_weight`` (tensor data bits / parameters),
    or a fit: ``device`` 'gpu'/'ram' at ``ctx_tokens`` with a ``kv_type`` cache, within the detected
    free memory or ``memory_bytes`` (a what-if budget)."""

    kind: str
    size_bytes: int = 0
    bits_per_weight: float = 0.0
    ctx_tokens: int = 4096
    kv_type: str = "f16"
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown target '{self.kind}'; choose one of {', '.join(KINDS)}")
        if self.kind == "size" and self.size_bytes <= 0:
            raise InvalidInput("the target size must be positive")
        if self.kind == "bpw" and not 1.0 <= self.bits_per_weight <= 32.0:
            raise InvalidInput(f"{self.bits_per_weight} bits per weight is out of range; give 1 to 32 (e.g. 4.3)")
        mem.RuntimeConfig(n_ctx=self.ctx_tokens, kv_type=self.kv_type)  # validates both

    @classmethod
    def size(cls, n_bytes: int) -> Target:
        return cls("size", size_bytes=int(n_bytes))

    @classmethod
    def bpw(cls, bits: float) -> Target:
        return cls("bpw", bits_per_weight=float(bits))

    @classmethod
    def fit(cls, device: str, ctx_tokens: int = 4096, kv_type: str = "f16", memory_bytes: int | None = None) -> Target:
        if device not in ("gpu", "ram"):
            raise InvalidInput(f"--fit takes 'gpu' or 'ram', not '{device}'")
        return cls(f"fit-{device}", ctx_tokens=int(ctx_tokens), kv_type=kv_type, memory_bytes=memory_bytes)

    @property
    def is_fit(self) -> bool:
        return self.kind.startswith("fit-")

    @property
    def runtime(self) -> mem.RuntimeConfig:
        return mem.RuntimeConfig(n_ctx=self.ctx_tokens, kv_type=self.kv_type)

    @property
    def label(self) -> str:
        """Short and file-name safe: '4.50GB', '4.30bpw', 'gpu-8k-q8_0'."""
        if self.kind == "size":
            return f"{self.size_bytes / 1e9:.2f}GB" if self.size_bytes >= 10**9 else f"{self.size_bytes / 1e6:.0f}MB"
        if self.kind == "bpw":
            return f"{self.bits_per_weight:.2f}bpw"
        ctx = f"{self.ctx_tokens // 1024}k" if self.ctx_tokens % 1024 == 0 else str(self.ctx_tokens)
        return f"{self.kind[4:]}-{ctx}-{self.kv_type}"

    def device_budget(self, hardware: Hardware) -> int:
        """Memory a fit target must stay within: the what-if budget, or the free VRAM / available RAM."""
        if self.memory_bytes is not None:
            return self.memory_bytes
        if self.kind == "fit-gpu":
            if not hardware.gpus:
                raise InvalidInput("--fit gpu: no GPU was detected; use --fit ram, or --memory SIZE to plan "
                                   "for a GPU of that size")
            return int(hardware.vram_free_bytes)
        return int(hardware.ram_available_bytes)

    def hardware(self, detected: Hardware) -> Hardware:
        """The machine the fit is planned for: as detected, or with the what-if budget as its device."""
        if self.memory_bytes is None:
            return detected
        gib = self.memory_bytes / 1024**3
        return detected.with_overrides(vram_gib=gib) if self.kind == "fit-gpu" else detected.with_overrides(ram_gib=gib)


CostFn = Callable[[str, tuple[int, ...], str], int]


def cost_function(target: Target, tied: bool, cpu_flags: tuple[str, ...] = ()) -> CostFn:
    """cost(name, shape, type): the bytes a tensor stored as ``type`` adds to what ``target`` limits."""
    if target.kind == "size":
        return lambda name, shape, t: layout.pad(layout.tensor_nbytes(shape, t))
    if target.kind == "bpw":
        return lambda name, shape, t: layout.tensor_nbytes(shape, t)
    if target.kind == "fit-gpu":
        def on_gpu(name: str, shape: tuple[int, ...], t: str) -> int:
            # llama.cpp keeps the input embedding on the CPU; tied, it is loaded again as the output layer
            return layout.tensor_nbytes(shape, t) if name != "token_embd.weight" or tied else 0

        return on_gpu
    repacked = mem.repacked_types(cpu_flags)

    def in_ram(name: str, shape: tuple[int, ...], t: str) -> int:
        n = int(layout.tensor_nbytes(shape, t))
        return n * 2 if mem.is_repacked(name, shape, t, repacked) else n

    return in_ram
