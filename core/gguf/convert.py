"""Streaming GGUF writer: run a :class:`~quantpress.core.gguf.plan.ConversionPlan`.

For every output the header, metadata and tensor infos are written first (sizes are known from the
plan); then each source tensor is read once, in row slabs, transformed, and converted/quantized for
every output, so peak memory is about one tensor's slab plus buffers, never the model, and no
intermediate F16 file exists. Outputs are written to a temporary name beside the target and renamed
when complete; cancel (checked between slabs) or any failure removes them. The source is only read.
A sidecar ``<output>.json`` records the plan and the measured results.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from quantpress.core.calibration.experts import by_block, fallback_note
from quantpress.core.disk import DiskFree, require_free_space
from quantpress.core.errors import InvalidInput, InvalidModel, NotEnoughDiskSpace
from quantpress.core.eta import CALIBRATION_COST, IMPORTANCE_COST, Stage, StagedProgress, write_cost
from quantpress.core.gguf import layout
from quantpress.core.gguf.mmproj import write_mmproj
from quantpress.core.gguf.plan import (
    CalibrationKind,
    ConversionPlan,
    OutputPlan,
    output_metadata,
    source_metadata,
)
from quantpress.core.gguf.source import HFReader, TensorPlan
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore
from quantpress.core.model import SourceKind
from quantpress.core.quant import grid_safe
from quantpress.core.quant.auto import QuantChoice, choose, for_output
from quantpress.core.signals import CONVERT_PARTIAL, remove_stale
from quantpress.core.validate import non_finite_weights

# float32 bytes per slab: bounds memory and the time between cancel checks. 16 MiB (was 64): on a
# 1.8 GB MoE the peak RSS fell from 330 to 185 MiB (the embedding slabs had dominated it), with no
# loss of speed measured (the native quantizers still get thousands of rows per call).
SLAB_BYTES = 16 << 20
DISK_MARGIN_BYTES = 16 << 20  # a GGUF's size is known to the byte: only header slack


@dataclass(frozen=True)
class ConversionResult:
    output: str
    format: str
    file_bytes: int
    seconds: float
    peak_rss_bytes: int
    calibration_tokens: int = 0
    warnings: tuple[str, ...] = ()
    calibration_device: str = ""  # where the calibration pass ran ("cpu", "cuda"); "" when none ran
    mmproj: str = ""  # the vision projector file written beside the model (multimodal wrappers), "" when none
    # Routed experts the calibration text never reached, by block ("blk.3" -> experts); their
    # importance fell back to their layer's mean (core/calibration/imatrix.py Imatrix.importance).
    uncalibrated_experts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines the CLI and the GUI's job log show after the result."""
        return (fallback_note(self.uncalibrated_experts),) if self.uncalibrated_experts else ()


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def check_outputs(plan: ConversionPlan) -> None:
    """Refuse outputs that are (or resolve to) the source, name a folder, or cannot be written; made
    before any output folder is created."""
    from quantpress.core.outputs import check_output_file

    source = Path(plan.local_path or plan.source)
    paths = [Path(o.path) for o in plan.outputs]
    for path in paths:
        check_output_file(path, [source], what="converted file")
        check_output_file(path.with_name(path.name + ".json"), [source], what="sidecar")
    if plan.mmproj is not None:
        check_output_file(Path(plan.mmproj.path), [source], what="vision projector file")
    if len(set(paths)) != len(paths):
        raise InvalidInput("two formats of this conversion would write the same file; give --out a folder")


def preflight(plan: ConversionPlan, disk_free: DiskFree | None = None) -> None:
    """Refuse to start when an output is unusable (check_outputs) or its folder lacks space for the
    plan's exact file sizes."""
    check_outputs(plan)
    need: dict[Path, int] = {}
    for o in plan.outputs:
        folder = Path(o.path).parent
        if not folder.is_dir():
            raise InvalidInput(f"{folder}: output folder does not exist")
        need[folder] = need.get(folder, 0) + o.file_bytes
    if plan.mmproj is not None:
        folder = Path(plan.mmproj.path).parent
        need[folder] = need.get(folder, 0) + plan.mmproj.file_bytes
    for folder, n in need.items():
        require_free_space(folder, n, what="the output", disk_free=disk_free, margin=DISK_MARGIN_BYTES,
                           advice="Free some space or choose another output folder.")


# ------------------------------------------------------------------------------ tensor encoding


def _importance(imatrix: Any, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The importance of tensor ``name``: (n_per_row,), or (n_expert, n_per_row) for stacked experts
    whose imatrix entry has one row per expert (llama.cpp's layout); None when absent or mis-sized."""
    if imatrix is None:
        return None
    imp = imatrix.importance(name)
    n_per_row = shape[-1]
    if imp is None:
        return None
    if imp.shape[0] == n_per_row:
        return np.ascontiguousarray(imp, dtype=np.float32)
    if len(shape) == 3 and imp.shape[0] == shape[0] * n_per_row:
        return np.ascontiguousarray(imp.reshape(shape[0], n_per_row), dtype=np.float32)
    return None


def _expert_pieces(x: np.ndarray, first_row: int, rows_per_expert: int) -> Iterator[tuple[int, np.ndarray]]:
    """(expert index, rows) pieces of a row slab of a stacked [E, R, C] tensor starting at ``first_row``."""
    a = 0
    while a < x.shape[0]:
        e, within = divmod(first_row + a, rows_per_expert)
        b = min(x.shape[0], a + rows_per_expert - within)
        yield e, x[a:b]
        a = b


def encode(x: np.ndarray, ggml_type: str, importance: np.ndarray | None, threads: int,
           engine: str = "auto", unit_gain: bool = False, grid_safe: bool = False) -> np.ndarray:
    """float32 (rows, n) -> bytes of ``ggml_type`` (F32/F16/BF16 cast, others quantized by ``engine``,
    see core.quant.engine_for; ``unit_gain``, ``grid_safe``: see core.quant.quantize_tensor)."""
    if ggml_type == "F32":
        return np.asarray(x, dtype=np.float32).view(np.uint8)
    if ggml_type == "F16":
        return np.asarray(x.astype(np.float16)).view(np.uint8)
    if ggml_type == "BF16":
        from gguf import GGMLQuantizationType
        from gguf.quants import quantize

        return np.asarray(quantize(x, GGMLQuantizationType.BF16)).view(np.uint8)
    from quantpress.core.quant import quantize_tensor

    return np.asarray(quantize_tensor(np.ascontiguousarray(x), ggml_type, importance, threads, engine, unit_gain,
                                      grid_safe))


def encode_as(x: np.ndarray, ggml_type: str, importance: np.ndarray | None, threads: int,
              how: QuantChoice) -> np.ndarray:
    """``encode`` the way ``how`` (an output's QuantChoice, after core.quant.auto.for_output) quantizes."""
    return encode(x, ggml_type, importance, threads, how.engine, how.rescales(ggml_type), how.grid_safe)


class _Output:
    """One file being written: temp name, handle, the plan entry and how its tensors are quantized."""

    def __init__(self, plan: OutputPlan, quant_choice: QuantChoice) -> None:
        self.plan = plan
        self.quant_choice = quant_choice
        self.final = Path(plan.path)
        self.tmp = self.final.with_name(f".{self.final.name}.partial-{os.getpid()}")
        self.f: BinaryIO = self.tmp.open("wb")
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        self.f.write(data)
        self.written += len(data)

    def pad(self) -> None:
        self.write(b"\0" * (layout.pad(self.written) - self.written))

    def discard(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _GGUFSourceReader:
    """Float32 slabs of a GGUF source's tensors (dequantized whole: one tensor at a time)."""

    def __init__(self, path: Path) -> None:
        from quantpress.core.gguf.reader import open_gguf

        self.g = open_gguf(path)
        self.label = path.name  # names the model in errors

    def raw(self, t: TensorPlan) -> np.ndarray:
        return np.asarray(self.g.raw(t.source))

    def slabs(self, t: TensorPlan, max_rows: int) -> Any:
        x = self.g.dequantize(t.source)
        x = x.reshape(-1, t.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)
        for a in range(0, x.shape[0], max_rows):
            yield np.ascontiguousarray(x[a:a + max_rows], dtype=np.float32)

    def close(self) -> None:
        self.g.close()


# ------------------------------------------------------------------------------ calibration


# Types whose quantizer takes no importance (Q8_0 rounds every block the same way whatever the weights).
_IMPORTANCE_FREE = frozenset({"F32", "F16", "BF16", "Q8_0"})


def _load_imatrix(plan: ConversionPlan, reader: Any, source_kv: list[Any], report: Report,
                  cancel: CancelToken, device: str = "auto") -> tuple[Any, str]:
    """The importance weights for ``plan`` (None for plain rounding) and the torch device a
    calibration pass ran on ("" when none ran)."""
    kind = plan.calibration.kind
    if kind == CalibrationKind.NONE:
        return None, ""
    if kind == CalibrationKind.WEIGHTS:
        if not _uses_weight_importance(plan):
            return None, ""  # nothing would use it: skip the extra read of the weights
        from quantpress.core.calibration.weights import weight_importance

        return weight_importance(plan.tensors, lambda t: _checked_slabs(reader, t), source_kv, plan.gguf_arch,
                                 report=report, cancel=cancel), ""
    from quantpress.core import calibration

    path = plan.calibration.path or ""  # FILE and IMATRIX plans always name one (plan_conversion checks it)
    if kind == CalibrationKind.IMATRIX:
        return calibration.load_imatrix(path), ""
    if plan.local_path is None:
        raise InvalidInput("calibration needs the model weights on disk")
    text = None if kind == CalibrationKind.DEFAULT else calibration.load_calibration_text(path)
    device = calibration.resolve_device(device)
    return calibration.compute_imatrix(Path(plan.local_path), text, device=device, report=report,
                                       cancel=cancel), device


def _quant_choice(plan: ConversionPlan, out: OutputPlan) -> QuantChoice:
    experts = any(t.name.endswith("_exps.weight") for t in plan.tensors)  # routed experts: core/quant/auto.AUTO_MOE
    return for_output(choose(plan.engine, out.format, plan.calibration.kind, experts=experts), out.tensor_types.values())


def _uses_weight_importance(plan: ConversionPlan) -> bool:
    return plan.calibration.kind == CalibrationKind.WEIGHTS and any(
        _quant_choice(plan, o).importance and set(o.tensor_types.values()) - _IMPORTANCE_FREE for o in plan.outputs)


def _tensor_costs(plan: ConversionPlan) -> list[float]:
    """Each tensor's share of the writing pass (core/eta.py): its weights times the cost of every
    encoding it gets, by type, engine and whether importance reaches it (a raw copy from a GGUF source
    costs only the read)."""
    from quantpress.core.quant import engine_for

    gguf_source = plan.source_kind == SourceKind.GGUF.value
    choices = [_quant_choice(plan, o) for o in plan.outputs]
    costs = []
    for t in plan.tensors:
        encodings: list[tuple[str, str, bool]] = []
        for o, how in zip(plan.outputs, choices, strict=True):
            ty = o.tensor_types[t.name]
            if gguf_source and ty == t.source_dtype and not t.transforms:
                continue
            if how.grid_safe and ty == "Q5_1":
                encodings += grid_safe.WORK
                continue
            imp = how.importance and _expects_importance(plan, t.name)
            encodings.append((ty, engine_for(ty, imp, how.engine), imp))
        costs.append(write_cost(t.n_elements, encodings))
    return costs


def _expects_importance(plan: ConversionPlan, name: str) -> bool:
    """Whether the plan's importance source will have an entry for tensor ``name``: every linear that
    reads activations (the token embedding is a lookup), and the output head only when measured on
    text or read from an imatrix (the weights estimate stops at the last block)."""
    kind = plan.calibration.kind
    if kind == CalibrationKind.NONE or name == "token_embd.weight":
        return False
    return not (kind == CalibrationKind.WEIGHTS and name == "output.weight")


def job_stages(plan: ConversionPlan) -> list[Stage]:
    """The passes ``convert(plan)`` makes, with their expected costs: one progress bar over the job."""
    from quantpress.core.calibration.weights import read_elements

    stages = []
    if _uses_weight_importance(plan):
        stages.append(Stage("importance", IMPORTANCE_COST * read_elements(plan.tensors)))
    elif plan.calibration.kind in (CalibrationKind.DEFAULT, CalibrationKind.FILE):
        stages.append(Stage("calibrate", CALIBRATION_COST * sum(t.n_elements for t in plan.tensors)))
    stages.append(Stage("convert", sum(_tensor_costs(plan))))
    return stages


# ------------------------------------------------------------------------------ main


def convert(plan: ConversionPlan, *, report: Report = ignore, cancel: CancelToken = NEVER,
            disk_free: DiskFree | None = None, device: str = "auto") -> list[ConversionResult]:
    """Write every output of ``plan``; see the module docstring. ``device``: where a calibration pass
    over text runs ("auto": CUDA when torch sees a GPU, else the CPU; "cpu"; "cuda"). Raises
    Cancelled, InvalidModel (e.g. NaN weights, naming the tensor), NotEnoughDiskSpace; nothing is
    left behind on failure."""
    t0 = time.monotonic()
    report = StagedProgress(report, job_stages(plan))  # one bar over both passes, with elapsed time and ETA
    preflight(plan, disk_free)
    for folder in {Path(o.path).parent for o in plan.outputs}:  # what killed conversions left behind
        remove_stale(folder, CONVERT_PARTIAL)
    source_kv = source_metadata(plan)
    outputs: list[_Output] = []
    reader = _open_reader(plan)
    try:
        imatrix, calibration_device = _load_imatrix(plan, reader, source_kv, report, cancel, device)
        n_tokens = int(getattr(imatrix, "n_tokens", 0) or 0)
        uncovered = by_block(getattr(imatrix, "experts_without_tokens", {}))
        for o in plan.outputs:
            outputs.append(_Output(o, _quant_choice(plan, o)))
            _write_preamble(plan, outputs[-1], source_kv, n_tokens)
        _write_tensors(plan, outputs, reader, imatrix, Throttle(report), cancel)
        for out in outputs:
            out.f.flush()
            os.fsync(out.f.fileno())
            out.f.close()
            if out.written != out.plan.file_bytes:  # the plan's promise; never ship a wrong file
                raise RuntimeError(f"{out.final.name}: wrote {out.written} bytes, plan said {out.plan.file_bytes}")
        if plan.mmproj is not None:  # small (a tower of ~0.4B parameters at most): written after the model
            report(Progress("convert", 1.0, f"vision projector {Path(plan.mmproj.path).name}"))
            write_mmproj(plan.mmproj, Path(plan.local_path or plan.source), plan.config, cancel=cancel)
        seconds = time.monotonic() - t0
        results = []
        for out in outputs:
            os.replace(out.tmp, out.final)
            res = ConversionResult(str(out.final), out.plan.format, out.written, seconds, peak_rss_bytes(),
                                   n_tokens, plan.warnings, calibration_device,
                                   plan.mmproj.path if plan.mmproj is not None else "",
                                   uncovered)
            _write_sidecar(plan, out.plan, res)
            results.append(res)
        report(Progress("convert", 1.0, "done", plan.source_bytes, plan.source_bytes, 0.0))
        return results
    except OSError as exc:
        for out in outputs:
            out.discard()
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise NotEnoughDiskSpace(f"the disk filled up while writing ({exc.strerror}); nothing was kept. "
                                     "Free some space or choose another output folder.") from None
        raise
    except BaseException:
        for out in outputs:
            out.discard()
        raise
    finally:
        reader.close()


def plan_importance(plan: ConversionPlan, *, report: Report = ignore, cancel: CancelToken = NEVER,
                    device: str = "auto") -> Any:
    """The importance (an Imatrix, or None) ``convert(plan)`` quantizes with, computed on its own."""
    reader = _open_reader(plan)
    try:
        return _load_imatrix(plan, reader, source_metadata(plan), report, cancel, device)[0]
    finally:
        reader.close()


def _open_reader(plan: ConversionPlan) -> Any:
    if plan.source_kind == SourceKind.GGUF.value:
        return _GGUFSourceReader(Path(plan.local_path or plan.source))
    return HFReader(Path(plan.local_path or ""), plan.config, _spec(plan))


def _spec(plan: ConversionPlan) -> Any:
    from quantpress.core.gguf.arch import spec_for_gguf_arch

    return spec_for_gguf_arch(plan.gguf_arch)


def _write_preamble(plan: ConversionPlan, out: _Output, source_kv: list[Any], n_tokens: int) -> None:
    kv = output_metadata(plan, out.plan.format, source_kv, n_tokens)
    types = out.plan.tensor_types
    head, total = layout.encode_preamble(layout.encode_metadata(kv), len(kv),
                                         [(t.name, t.shape, types[t.name]) for t in plan.tensors])
    if len(head) != out.plan.metadata_bytes or total != out.plan.file_bytes:
        raise InvalidModel(f"{plan.source}: the model's config or tokenizer changed since this plan was made "
                           f"(metadata {len(head)} bytes, planned {out.plan.metadata_bytes}); plan again")
    out.write(head)


def _write_tensors(plan: ConversionPlan, outputs: list[_Output], reader: Any, imatrix: Any,
                   report: Report, cancel: CancelToken) -> None:
    costs = _tensor_costs(plan)  # progress in expected work: a Q6_K output head weighs less than a Q4_K one
    total = max(1.0, sum(costs))
    done = 0.0
    for t, cost in zip(plan.tensors, costs, strict=True):
        cancel.raise_if_cancelled()
        n_per_row = t.shape[-1]
        types = [o.plan.tensor_types[t.name] for o in outputs]
        imp = _importance(imatrix, t.name, t.shape)
        copy_raw = [_copies_raw(plan, t, ty) for ty in types]
        if all(copy_raw):
            for raw in _raw_chunks(reader, t):
                for out in outputs:
                    out.write(_buffer(raw))
        else:
            n_rows = max(1, t.n_elements // n_per_row)
            row = 0
            for x in _checked_slabs(reader, t):
                cancel.raise_if_cancelled()
                for out, ty, raw_copy in zip(outputs, types, copy_raw, strict=False):
                    if raw_copy:
                        continue
                    how = out.quant_choice
                    used = imp if how.importance else None
                    if used is None:
                        _check_no_importance_needed(plan, t, ty)
                    elif used.ndim == 2:  # per-expert rows
                        for e, piece in _expert_pieces(x, row, t.shape[-2]):
                            out.write(_buffer(encode_as(piece, ty, used[e], plan.threads, how)))
                        continue
                    out.write(_buffer(encode_as(x, ty, used, plan.threads, how)))
                row += x.shape[0]
                now = done + cost * row / n_rows
                report(Progress("convert", min(now / total, 0.999), t.name, int(now), int(total)))
            if any(copy_raw):
                for raw in _raw_chunks(reader, t):
                    for out, raw_copy in zip(outputs, copy_raw, strict=False):
                        if raw_copy:
                            out.write(_buffer(raw))
        for out in outputs:
            out.pad()
        done += cost
        report(Progress("convert", min(done / total, 0.999), t.name, int(done), int(total)))


def _copies_raw(plan: ConversionPlan, t: TensorPlan, ggml_type: str) -> bool:
    """Whether ``t`` is written as its source's bytes: an unchanged tensor of a GGUF source in its own
    type, or MXFP4 expert blocks of a checkpoint (gpt-oss) kept MXFP4, which only move nibbles."""
    if ggml_type != t.source_dtype:
        return False
    if plan.source_kind == SourceKind.GGUF.value:
        return not t.transforms
    return ggml_type == "MXFP4"


def _raw_chunks(reader: Any, t: TensorPlan) -> Iterator[np.ndarray]:
    """The raw bytes of ``t`` (uint8), in one piece (GGUF source) or expert by expert (checkpoint)."""
    if hasattr(reader, "raw_chunks"):
        for chunk in reader.raw_chunks(t):
            yield np.ascontiguousarray(chunk).view(np.uint8)
    else:
        yield np.ascontiguousarray(reader.raw(t)).view(np.uint8)


def _check_no_importance_needed(plan: ConversionPlan, t: TensorPlan, ggml_type: str) -> None:
    """A tensor whose i-quant type needs importance (mixes_iq.NEEDS_IMPORTANCE) but has none: refuse, as
    llama-quantize does, rather than write a near-useless tensor."""
    from quantpress.core.gguf.mixes_iq import tensors_needing_importance

    if tensors_needing_importance({t.name: ggml_type}):
        raise InvalidInput(f"{t.name} is {ggml_type}, which needs importance weights, but calibration "
                           f"'{plan.calibration.label}' has none for it. Use calibration text or an imatrix "
                           "that covers this tensor, or choose a format from IQ3_S up.")


def _checked_slabs(reader: Any, t: TensorPlan) -> Iterator[np.ndarray]:
    """The tensor's float32 row slabs (SLAB_BYTES each at most); InvalidModel on NaN/Inf."""
    for x in reader.slabs(t, max(1, SLAB_BYTES // (4 * t.shape[-1]))):
        if not np.isfinite(x).all():
            raise non_finite_weights(reader.label, t.source or t.name)
        yield x


def _buffer(arr: np.ndarray) -> memoryview:
    """The bytes of ``arr`` without a copy (C-contiguous flat uint8 view)."""
    return np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data


def _write_sidecar(plan: ConversionPlan, out: OutputPlan, result: ConversionResult) -> None:
    from dataclasses import asdict, replace

    one = replace(plan, outputs=(out,))
    data = {"plan": one.to_dict(), "result": asdict(result)}
    path = Path(out.path + ".json")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
