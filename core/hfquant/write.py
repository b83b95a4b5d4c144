"""Write a planned quantized Hugging Face folder: shards as the plan lists them, config.json with the
scheme's quantization_config, the tokenizer files and a ``quantpress_quant.json`` sidecar, all in a
temporary folder beside the target that is renamed when complete (a failed or cancelled job leaves
nothing behind; the source folder is only read).

``convert_weights_only`` runs a calibration-free scheme (FP8, NF4): each layer's linears are quantized
from their weights alone, one decoder layer in memory at a time. Calibrated schemes (GPTQ) drive
:class:`ShardWriter` from their own layer-wise pass.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput
from quantpress.core.hfquant.plan import HfQuantPlan, Scheme, layer_index, plan_hf_quant
from quantpress.core.hfquant.safetensors_out import header
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore

SIDECAR = "quantpress_quant.json"

# torch dtype name (str(dtype) without "torch.") -> safetensors dtype
_ST_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "int32": "I32",
             "uint8": "U8", "int64": "I64", "int8": "I8", "int16": "I16"}

# a module's float weight (out, in) -> its stored tensors by suffix ("weight", "weight_scale", ...)
ModuleQuantizer = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class HfQuantResult:
    output: str
    format: str
    file_bytes: int  # the weight shards, as planned
    seconds: float
    quantized: int  # linears quantized
    kept: tuple[str, ...]  # linears left in float (shape the format cannot take)
    calibration: str = "none"
    n_tokens: int = 0
    device: str = "cpu"


class ShardWriter:
    """Writes shard ``i`` of ``plan`` into ``folder`` from a dict of torch tensors, checking each tensor
    against the plan (name, dtype, shape) so the files are exactly the planned ones."""

    def __init__(self, plan: HfQuantPlan, folder: Path) -> None:
        self.plan, self.folder = plan, folder
        self.written: set[int] = set()

    def write(self, index: int, tensors: dict[str, Any]) -> None:
        import torch

        entries = self.plan.shards[index]
        want = {e.name for e in entries}
        if set(tensors) != want:
            extra, missing = sorted(set(tensors) - want), sorted(want - set(tensors))
            raise RuntimeError(f"shard {index}: tensors differ from the plan (extra {extra[:3]}, missing {missing[:3]})")
        path = self.folder / self.plan.shard_names[index]
        with path.open("wb") as f:
            f.write(header(entries))
            for e in entries:
                t = tensors[e.name].contiguous()
                dtype = _ST_DTYPE.get(str(t.dtype).removeprefix("torch."))
                if dtype != e.dtype or tuple(t.shape) != e.shape:
                    raise RuntimeError(f"{e.name}: {dtype} {tuple(t.shape)} but the plan says {e.dtype} {e.shape}")
                f.write(t.reshape(-1).view(torch.uint8).numpy().data)
        self.written.add(index)

    def finish(self) -> None:
        if len(self.written) != len(self.plan.shards):
            raise RuntimeError("not every shard was written")
        weight_map = {e.name: name for name, shard in zip(self.plan.shard_names, self.plan.shards, strict=True)
                      for e in shard}
        index = {"metadata": {"total_size": sum(e.n_bytes for s in self.plan.shards for e in s)},
                 "weight_map": dict(sorted(weight_map.items()))}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


class SourceTensors:
    """Float tensors of the source folder by name (safetensors handles opened once)."""

    def __init__(self, folder: Path, files: dict[str, str]) -> None:
        self.folder, self.files = folder, files
        self._handles: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        from safetensors import safe_open

        fname = self.files[name]
        if fname not in self._handles:
            self._handles[fname] = safe_open(str(self.folder / fname), framework="pt")
        return self._handles[fname].get_tensor(name)


def layer_modules(plan: HfQuantPlan) -> dict[int, list[str]]:
    """Quantized module names per shard index (the last shard: modules outside the layers, none today)."""
    out: dict[int, list[str]] = {}
    for m in plan.quantized:
        out.setdefault(layer_index(m + ".weight") or 0, []).append(m)
    return out


@contextmanager
def written_aside(model_dir: Path, out: Path, n_bytes: int) -> Iterator[Path]:
    """The temporary folder an output is written in (finish_output moves it into place), after checking
    ``out`` (not the source, ours to replace if it exists) and that its disk holds the planned
    ``n_bytes``. A failed or cancelled block deletes it; a full disk becomes NotEnoughDiskSpace."""
    tmp = _start_output(model_dir, out, n_bytes)
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_full(exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _start_output(model_dir: Path, out: Path, n_bytes: int) -> Path:
    from quantpress.core.awq.export import temp_folder
    from quantpress.core.disk import require_free_space
    from quantpress.core.outputs import check_output_folder

    check_output_folder(out, [model_dir], what="quantized folder")
    if out.exists() and not (out / SIDECAR).is_file():
        raise InvalidInput(f"output folder '{out}' exists and was not written by quantpress; choose another "
                           "--out or remove it")
    require_free_space(out.parent, n_bytes, what="the quantized folder",
                       advice="Free some space or choose another output folder.")
    return temp_folder(out)


def disk_full(exc: OSError) -> Exception:
    """NotEnoughDiskSpace for a write that ran out of space (other disks' users can fill it meanwhile)."""
    import errno

    from quantpress.core.errors import NotEnoughDiskSpace

    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return NotEnoughDiskSpace(f"the disk filled up while writing ({exc.strerror}); nothing was kept. "
                                  "Free some space or choose another output folder.")
    return exc


def finish_output(tmp: Path, out: Path, plan: HfQuantPlan, scheme: Scheme, result: HfQuantResult,
                  extra: dict[str, Any] | None = None) -> None:
    """config.json, tokenizer files, sidecar; then move the folder into place."""
    from quantpress.core.awq.export import copy_model_files, write_config

    src = Path(plan.source)
    write_config(src, tmp, scheme.quantization_config(plan.quantized), scheme.torch_dtype)
    copy_model_files(src, tmp)
    (tmp / SIDECAR).write_text(json.dumps({"format": plan.format, "source": plan.source, "result": asdict(result),
                                           "kept_in_float": list(plan.kept), **(extra or {})}, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def convert_weights_only(model_dir: str | Path, out: str | Path, scheme: Scheme, quantize_module: ModuleQuantizer, *,
                         report: Report = ignore, cancel: CancelToken = NEVER) -> HfQuantResult:
    """Quantize every planned linear of ``model_dir`` with ``quantize_module`` and write ``out``."""
    from quantpress.core.outputs import output_folder

    model_dir, out = Path(model_dir), Path(out)
    t0 = time.monotonic()
    plan = plan_hf_quant(model_dir, scheme)
    throttle = Throttle(report)
    by_layer = layer_modules(plan)
    with output_folder(out.parent):
        with written_aside(model_dir, out, plan.file_bytes) as tmp:
            src = SourceTensors(model_dir, plan.sources)
            writer = ShardWriter(plan, tmp)
            for i, shard in enumerate(plan.shards):
                cancel.raise_if_cancelled()
                tensors = {e.name: src.get(e.name) for e in shard if e.name in plan.sources}
                for m in by_layer.get(i, []):
                    w = src.get(m + ".weight")
                    tensors.update({f"{m}.{k}": v for k, v in quantize_module(w).items()})
                writer.write(i, tensors)
                throttle(Progress(scheme.name.lower(), (i + 1) / len(plan.shards), f"shard {i + 1}/{len(plan.shards)}",
                                  i + 1, len(plan.shards)))
            writer.finish()
            result = HfQuantResult(str(out), scheme.name, plan.file_bytes, time.monotonic() - t0, len(plan.quantized),
                                   plan.kept)
            finish_output(tmp, out, plan, scheme, result)
    report(Progress(scheme.name.lower(), 1.0, "done"))
    return result
