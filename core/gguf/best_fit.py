"""The best file that fits: per-tensor GGML types chosen for a target (file size, bits per weight, or
the memory of a GPU / of RAM at a context), minimising the expected loss.

    plan = plan_best_fit(open_model("demo"), Target.size(parse_size("100MB")))
    plan.outputs[0].tensor_types, plan.outputs[0].file_bytes, plan.target.expected_kld
    convert(plan)        # an ordinary GGUF of mixed types; the sidecar holds the plan (replayable)

1. Sensitivity (SENSITIVITIES): by default ``runtime``: the weights estimate
   (core/calibration/sensitivity.py, computed in the same read of the weights as the importance
   estimate) gives the candidates' errors their first weights, then core/gguf/runtime_probe.py replaces
   them with losses measured per tensor category through llama.cpp on a temporary F16 copy (each
   category stored at Q5_0, and at its cheapest type where that is lossier). ``weights``: the
   estimate alone (no copy, no runtime; blind to very large activations). ``fisher``: a short Fisher
   pass over the built-in calibration text (core/calibration/fisher.py: per linear, output-gradient² per
   row × input² per column), needing torch and a pass through the model. The quantizer's importance is
   the plan's own (weights-estimated by default, or a measured imatrix).
2. For every quantizable tensor and every type its row length allows (CANDIDATES), that type's
   error, measured on a sample of rows with the quantizer the converter will use, more rows where
   the estimate's standard error is above 10% (core/gguf/tensor_errors.py), and weighted by the
   sensitivity: the expected loss of each option (runtime: then put on the measured per-category curves).
3. The budgeted choice (core/gguf/allocate.py), then checked exactly: the file size from the layout
   encoder, memory from the estimator (core/estimate.py); a fit target that the linear per-tensor
   costs slightly misjudged is solved again with the overshoot taken off the budget.
4. A size or bits-per-weight target then spends what is left on dearer types of no more measured
   loss (weights on a type's grid, as the demo model's on Q4_1's, are stored as exactly by Q5_1): the
   token embedding and output layer first, then the tensors most sensitive per weight (spend_order),
   so the file is the size asked for whenever the types allow, never above it. Each such purchase is
   then checked on every row of its tensor (the errors saw a sample) and the choice solved again without
   those that are not exact. A fit target does not spend: memory spent for nothing measured is headroom
   lost.
5. What 1-4 measured (losses, sensitivity source, the lossless checks) is kept per model
   (core/gguf/loss_cache.py): choosing types from it takes a fraction of a second, so another plan of
   the same model — another target, or the real run after a dry run — skips 1, 2 and the checks
   already made, and chooses exactly what the first would have.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.calibration.fisher import LossTerm
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf import layout, loss_cache
from quantpress.core.gguf.allocate import Allocation, Option, allocate
from quantpress.core.gguf.loss_cache import Measured
from quantpress.core.gguf.mixes import allows_quantization
from quantpress.core.gguf.plan import (
    MIXED_FORMAT,
    ConversionPlan,
    OutputPlan,
    TargetSummary,
    _output_paths,
    output_metadata,
    plan_conversion,
    source_metadata,
)
from quantpress.core.gguf.source import TensorPlan
from quantpress.core.gguf.targets import Target, cost_function
from quantpress.core.gguf.tensor_errors import TensorErrors, measure_errors, rows_exact
from quantpress.core.hardware import Hardware
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore
from quantpress.core.model import ModelInfo

# Types a quantizable tensor may get, cheapest first. Every one has CPU, CUDA and Metal kernels in the
# llama.cpp llama-cpp-python 0.3.36 bundles (ggml-cpu, ggml-cuda mmq/mmvq, ggml-metal), for matmuls
# and for the token embedding's get_rows (which llama.cpp runs on the CPU). Q4_0 is left out: IQ4_NL
# has its size and block with non-uniform levels (lower error, core/gguf/mixes.py). 1-D tensors and
# norms stay F32, as llama.cpp requires (mixes.allows_quantization).
CANDIDATES = ("Q2_K", "Q3_K", "IQ4_XS", "IQ4_NL", "Q4_K", "Q4_1", "Q5_0", "Q5_K", "Q5_1", "Q6_K", "Q8_0")
MAX_RESOLVES = 6  # fit targets: re-solves with the estimator's overshoot taken off the budget
# Fit targets plan to this share of the budget: the estimator is within about 1% of llama.cpp's measured
# memory (BENCHMARKS.md, "Memory estimator"), and a plan that filled the budget to the byte went over
# it by 18 KB in a measured run (qwen3, --fit ram).
FIT_SHARE = 0.99
# Row samples smaller than this are quantized on the calling thread: the thousands of small samples a
# plan measures would otherwise spend more on starting thread pools than on quantizing.
PARALLEL_MIN_ELEMENTS = 1 << 18
FISHER_RAM_SHARE = 0.6  # the sensitivity pass loads the model in float32: at most this share of free RAM
PROBE_RAM_SHARE = 0.6  # the runtime probe runs an F16 copy: at most this share of free RAM
# Where the per-tensor sensitivity comes from: 'runtime' (the losses measured per tensor category through
# llama.cpp's runtime on a temporary F16 copy, core/gguf/runtime_probe.py, on top of the weights
# estimate's errors), 'weights' (the estimate alone: no temporary copy, but off by orders of magnitude
# on models with massive activations) or 'fisher' (a calibration pass through the model with torch:
# finer per tensor, but its fixed costs are many conversions).
SENSITIVITIES = ("runtime", "weights", "fisher")
DEFAULT_SENSITIVITY = "runtime"
# Bytes that buy no measured gain go to these first: llama.cpp's k-quant mixes store the output layer
# (a tied token embedding is it) at Q6_K or more (llama-quant.cpp, llama_tensor_get_type): every
# token's logits go through it.
SPENT_FIRST = ("output.weight", "token_embd.weight")
# A size target's file further below it than this share is reported (the target asked for more).
SIZE_SLACK = 0.005
# A size target's leftover buys dearer types measured lossless on a tensor's sampled rows; each such
# purchase is checked on every row (a demo tensor had 2 of 10,368 Q5_1 blocks off the grid, outside the
# sample, which raised the KLD of a larger file) and the choice solved again without the ones that fail.
MAX_EXACT_CHECKS = 4


def candidates_for(name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """The candidate types of a tensor (empty: it stays F32): those whose block divides its rows."""
    if not allows_quantization(name, len(shape)):
        return ()
    return tuple(t for t in CANDIDATES if shape[-1] % layout.block_size(t) == 0)


def plan_best_fit(model: ModelInfo, target: Target, out: Path | None = None, *,
                  imatrix: str | Path | None = None, calibration: str | Path | None = None,
                  threads: int = 0, engine: str = "auto", hardware: Hardware | None = None,
                  sensitivity: str = DEFAULT_SENSITIVITY, reuse: bool = True, report: Report = ignore,
                  cancel: CancelToken = NEVER) -> ConversionPlan:
    """A plan with one MIXED output whose per-tensor types meet ``target`` with the least expected
    loss (module docstring). Importance options as plan_conversion's; ``hardware``: for fit targets
    (detected when None); ``sensitivity``: one of SENSITIVITIES; ``reuse``: take the losses measured
    for this model before (core/gguf/loss_cache.py) where nothing they depend on changed. Reads the
    weights (importance, errors); writes nothing but the loss cache."""
    if sensitivity not in SENSITIVITIES:
        raise InvalidInput(f"unknown sensitivity '{sensitivity}'; choose one of {', '.join(SENSITIVITIES)}")
    t0 = time.monotonic()
    base = plan_conversion(model, ["Q8_0"], None, imatrix=imatrix, calibration=calibration, threads=threads,
                           engine=engine)
    name = base.model_name or Path(base.source).name
    path = _output_paths(model, name, [f"{MIXED_FORMAT}-{target.label}"], out)[0]
    src_kv = source_metadata(base)
    kv = output_metadata(base, MIXED_FORMAT, src_kv)
    shapes = {t.name: tuple(t.shape) for t in base.tensors}
    cands = {t.name: candidates_for(t.name, shapes[t.name]) for t in base.tensors}
    fixed_types = {n: "F32" for n, c in cands.items() if not c}

    metadata = layout.encode_metadata(kv)  # once: a large vocabulary takes a good part of a second to encode

    def finish(types: dict[str, str]) -> tuple[bytes, int]:
        head, total = layout.encode_preamble(metadata, len(kv),
                                             [(t.name, t.shape, types[t.name]) for t in base.tensors])
        return head, int(total)

    head, _ = finish({**fixed_types, **{n: c[0] for n, c in cands.items() if c}})
    tied = "output.weight" not in shapes
    hw = None
    if target.is_fit:
        from quantpress.core.hardware import detect_hardware

        hw = target.hardware(hardware or detect_hardware())
    cost = cost_function(target, tied, hw.cpu_flags if hw else ())
    fixed_cost = sum(cost(n, shapes[n], t) for n, t in fixed_types.items())
    n_params = sum(t.n_elements for t in base.tensors)

    def solve(loss: Callable[[str, str], float | None],
              priority: dict[str, float] | None = None) -> tuple[int, Allocation, int]:
        """(budget, allocation, estimated memory or 0) for the options' losses ``loss(name, type)``
        (None: not an option, a dearer type than a lossless one that loses); ``priority``: spend the
        leftover of a size or bpw target on dearer lossless types in this order (allocate)."""
        options = {n: [Option(t, cost(n, shapes[n], t), v) for t in c if (v := loss(n, t)) is not None]
                   for n, c in cands.items() if c}
        if target.kind == "size":
            return target.size_bytes, _solve(options, target.size_bytes - len(head) - fixed_cost,
                                             lambda b: f"{b:,} bytes", priority), 0
        if target.kind == "bpw":
            budget = int(target.bits_per_weight * n_params / 8)
            return budget, _solve(options, budget - fixed_cost, lambda b: f"{8 * b / n_params:.2f} bits per weight",
                                  priority), 0
        assert hw is not None
        budget = target.device_budget(hw)
        return (budget, *_solve_fit(model, target, hw, shapes, options, fixed_types, fixed_cost, budget, len(head),
                                    finish))

    solve(lambda n, t: 0.0)  # refuses a target nothing fits before the weights are read
    def write_probe_base(folder: Path) -> Path:
        from quantpress.core.gguf.convert import convert

        probe = plan_conversion(model, ["F16"], folder, calibration="none", threads=threads, mmproj="none")
        f16_bytes = probe.outputs[0].file_bytes
        if f16_bytes > PROBE_RAM_SHARE * _available_ram():
            raise ValueError(f"its F16 copy ({f16_bytes / 1024**3:.1f} GiB) would not fit in RAM")
        convert(probe, cancel=cancel)  # refuses with NotEnoughDiskSpace (an OSError) where it does not fit
        return Path(probe.outputs[0].path)

    stored = _Stored(base, src_kv, threads)
    cache_key = loss_cache.key(base, sensitivity=sensitivity, engine=engine)
    measured = loss_cache.load(cache_key) if reuse else None
    if measured is None:
        measured = _measure(base, cands, src_kv, threads, sensitivity, stored, report, cancel, write_probe_base)
    else:
        report(Progress("measure", 0.99, "losses measured before for this model (reused)"))
    errors, source, notes = measured.errors, measured.source, measured.notes
    check = _exact_checker(base, stored, cancel)

    def exact(choices: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        missing = [c for c in choices if c not in measured.exact]
        if missing:
            measured.exact.update(check(missing))
        return {c: measured.exact[c] for c in choices}

    report(Progress("plan", 0.999, "choosing types"))
    order = spend_order(errors, {t.name: t.n_elements for t in base.tensors})
    checked: dict[tuple[str, str], bool] = {}

    def loss(name: str, ggml_type: str) -> float | None:
        return None if checked.get((name, ggml_type)) is False else errors[name].loss.get(ggml_type)

    for attempt in range(MAX_EXACT_CHECKS + 1):
        budget, alloc, memory = solve(loss, order)
        bought = [c for c in _bought_as_exact(alloc.types, errors) if c not in checked]
        if not bought or attempt == MAX_EXACT_CHECKS:
            break
        found = exact(bought)  # lossless on the sampled rows only: not bought if it fails
        checked |= found
        if all(found.values()):  # nothing excluded: solving again would choose the same
            break
    if measured.keep:  # not a fallback that may not happen next time (the probe found no room, say)
        loss_cache.save(cache_key, measured)
    types = {t.name: {**fixed_types, **alloc.types}[t.name] for t in base.tensors}
    head, file_bytes = finish(types)
    if target.kind == "size" and file_bytes > target.size_bytes:  # the layout's promise; never hand out more
        raise RuntimeError(f"planned {file_bytes} bytes for a {target.size_bytes}-byte target")
    warnings = list(base.warnings) + notes
    used = {"size": file_bytes, "bpw": fixed_cost + alloc.cost}.get(target.kind, memory)
    if alloc.cost >= alloc.max_cost and used < (1 - SIZE_SLACK) * budget:
        warnings.append(f"the target allows more than the most accurate choice: every tensor is at its lowest-error "
                        f"type and no dearer type of no more error fits; the file is {file_bytes:,} bytes")
    summary = TargetSummary(target.kind, target.label, budget, alloc.loss, memory,
                            target.ctx_tokens if target.is_fit else 0, target.kv_type if target.is_fit else "",
                            round(time.monotonic() - t0, 2), source)
    output = OutputPlan(str(path), MIXED_FORMAT, types, file_bytes, len(head))
    return dataclasses.replace(base, outputs=(output,), target=summary, warnings=tuple(warnings))


def _bought_as_exact(types: dict[str, str], errors: dict[str, TensorErrors]) -> list[tuple[str, str]]:
    """(tensor, type) where the choice is a dearer type than the tensor's cheapest lossless one, of no
    measured loss either: bytes spent on the promise that the sampled rows speak for all of them."""
    out = []
    for name, ggml_type in types.items():
        loss = errors[name].loss
        lossless = [t for t, v in loss.items() if v == 0.0]  # cheapest first (CANDIDATES' order)
        if loss.get(ggml_type) == 0.0 and lossless and ggml_type != lossless[0]:
            out.append((name, ggml_type))
    return out


def spend_order(errors: dict[str, TensorErrors], n_elements: dict[str, int]) -> dict[str, float]:
    """The order in which a size target's leftover buys dearer types of no more measured loss
    (higher first): SPENT_FIRST, then by sensitivity per weight (the loss the tensor would cause if
    it were zero, per weight)."""
    order = sorted(errors, key=lambda n: (n in SPENT_FIRST, errors[n].signal / max(1, n_elements[n]), n))
    return {n: float(i) for i, n in enumerate(order)}


def _solve(options: dict[str, list[Option]], budget: int, say: Callable[[int], str],
           priority: dict[str, float] | None = None) -> Allocation:
    try:
        return allocate(options, budget, priority)
    except InvalidInput:
        smallest = sum(min(o.cost for o in opts) for opts in options.values())
        raise InvalidInput(f"the target is too small for this model: even the smallest types need "
                           f"{say(smallest)} more than it allows ({say(max(0, budget))} left for the "
                           "quantized tensors); choose a larger target") from None


def _solve_fit(model: ModelInfo, target: Target, hw: Hardware, shapes: dict[str, tuple[int, ...]],
               options: dict[str, list[Option]], fixed_types: dict[str, str], fixed_cost: int, budget: int,
               metadata_bytes: int, finish: Callable[[dict[str, str]], tuple[bytes, int]]) -> tuple[Allocation, int]:
    """Solve a fit target: the memory not owed to the weights (KV, compute, overhead) from the
    estimator at the cheapest types, then re-solve while the estimate says the choice is over budget."""
    from quantpress.core.estimate import estimate_output

    runtime = target.runtime
    roomy = hw.with_overrides(vram_gib=1 << 20, ram_gib=1 << 20)  # placement forced: full offload / all in RAM

    def memory(types: dict[str, str]) -> int:
        full = {**fixed_types, **types}
        est = estimate_output(model, roomy, runtime, shapes, full, finish(full)[1], metadata_bytes)
        return int(est.vram_bytes if target.kind == "fit-gpu" else est.cpu_only_bytes)

    cheapest = {n: min(opts, key=lambda o: o.cost) for n, opts in options.items()}
    other = memory({n: o.ggml_type for n, o in cheapest.items()}) - fixed_cost - sum(o.cost for o in cheapest.values())
    limit = int(FIT_SHARE * budget)
    room = limit - other - fixed_cost
    unit = "VRAM" if target.kind == "fit-gpu" else "RAM"
    for _ in range(MAX_RESOLVES):
        try:
            alloc = allocate(options, room)
        except InvalidInput:
            raise InvalidInput(f"nothing fits in {budget / 1024**2:,.0f} MiB of {unit} at {target.ctx_tokens} tokens "
                               f"with a {target.kv_type} KV cache: the KV cache, compute buffer and overhead alone "
                               f"need {other / 1024**2:,.0f} MiB and the smallest types "
                               f"{(fixed_cost + sum(o.cost for o in cheapest.values())) / 1024**2:,.0f} MiB more; "
                               "try a shorter context or a q8_0/q4_0 KV cache") from None
        used = memory(alloc.types)
        if used <= limit:
            return alloc, used
        room -= used - limit
    raise InvalidInput(f"could not find types whose estimated {unit} stays within {budget:,} bytes")


class _Stored:
    """The converter's quantizer for the best fit's output of ``base`` (core/gguf/convert.py ``encode``
    with its engine and unit gain) and the importance it passes: set by the measurement, or worked out
    on first need where the measurement came from the cache (loss_cache)."""

    def __init__(self, base: ConversionPlan, src_kv: list[Any], threads: int) -> None:
        from quantpress.core.gguf.convert import _quant_choice

        probe = dataclasses.replace(base, outputs=(dataclasses.replace(base.outputs[0], format=MIXED_FORMAT),))
        self.how = _quant_choice(probe, probe.outputs[0])
        self.base, self.src_kv, self.threads = base, src_kv, threads
        self.imatrix: Any = None
        self.known = False

    def quantize(self, x: np.ndarray, ggml_type: str, imp: np.ndarray | None) -> np.ndarray:
        """A sample's bytes: measure_errors runs tensors side by side, so a small one takes one thread."""
        # the bytes do not depend on the thread count; a small sample is done before threads start
        return self._encode(x, ggml_type, imp, self.threads if x.size >= PARALLEL_MIN_ELEMENTS else 1)

    def quantize_whole(self, x: np.ndarray, ggml_type: str, imp: np.ndarray | None) -> np.ndarray:
        """A whole tensor's bytes (the probe's patches, the lossless checks): one at a time, on every
        thread (on the qwen3 test model, whose tensors are all below PARALLEL_MIN_ELEMENTS, the probe's
        quantizing ran on one core)."""
        return self._encode(x, ggml_type, imp, self.threads)

    def _encode(self, x: np.ndarray, ggml_type: str, imp: np.ndarray | None, threads: int) -> np.ndarray:
        from quantpress.core.gguf.convert import encode_as

        return np.asarray(encode_as(x, ggml_type, imp, threads, self.how))

    def importance(self, name: str, n: int) -> np.ndarray | None:
        from quantpress.core.gguf.convert import _importance

        return _importance(self.imatrix, name, (n,)) if self.how.importance else None

    def learn(self, estimated: Any, measured: Any) -> None:
        """The importance the converter passes: the weights estimate where the plan's importance is
        estimated, else the measured one (an imatrix from text or a file; None for plain rounding)."""
        self.imatrix = estimated if self.base.calibration.kind == "weights" else measured
        self.known = True

    def prepare(self, read: Callable[[TensorPlan], Any], cancel: CancelToken) -> None:
        """Work out the importance where the measurement did not (it came from the cache)."""
        if self.known or not self.how.importance:
            return
        from quantpress.core.calibration.weights import weight_importance
        from quantpress.core.gguf.convert import plan_importance

        base = self.base
        self.learn(weight_importance(base.tensors, read, self.src_kv, base.gguf_arch, cancel=cancel)
                   if base.calibration.kind == "weights" else None,
                   plan_importance(base, cancel=cancel) if base.calibration.from_data else None)


def _measure(base: ConversionPlan, cands: dict[str, tuple[str, ...]], src_kv: list[Any], threads: int,
             sensitivity: str, stored: _Stored, report: Report, cancel: CancelToken,
             write_probe_base: Callable[[Path], Path]) -> Measured:
    """Expected loss of every candidate type of every tensor, the sensitivity's source ('fisher',
    'runtime' or 'weights') and warnings; ``stored`` learns the importance the converter will pass."""
    from quantpress.core.calibration.sensitivity import estimate_sensitivity
    from quantpress.core.calibration.weights import weight_importance
    from quantpress.core.gguf.convert import _checked_slabs, _importance, _open_reader, plan_importance

    kind = base.calibration.kind
    warnings: list[str] = []
    reader = _open_reader(base)
    try:
        def read(t: TensorPlan) -> Any:
            return _checked_slabs(reader, t)

        why_not = _fisher_unavailable(base) if sensitivity == "fisher" else None
        fisher: dict[str, list[LossTerm]] = {}
        estimated = None
        if sensitivity == "fisher" and why_not is None:
            from quantpress.core.calibration.collect import resolve_device
            from quantpress.core.calibration.fisher import fisher_terms

            fisher = fisher_terms(Path(base.local_path or ""), device=resolve_device("auto"), report=report,
                                  cancel=cancel)
            if kind == "weights":
                estimated = weight_importance(base.tensors, read, src_kv, base.gguf_arch, report=report, cancel=cancel)
            source = "fisher"
        else:
            if why_not is not None:
                warnings.append(f"sensitivity estimated from the weights ({why_not}), not by a calibration pass")
            estimated, sens = estimate_sensitivity(base.tensors, read, src_kv, base.gguf_arch, report=report,
                                                   cancel=cancel)
            source = "weights"
        keep = why_not is None  # torch missing or no room for the pass: it may be there next time
        measured = plan_importance(base, report=report, cancel=cancel) if base.calibration.from_data else None
        stored.learn(estimated, measured)
        plans = {t.name: t for t in base.tensors}

        def terms(name: str, n_rows: int, n: int) -> list[LossTerm]:
            if source == "fisher":
                mapped = [_in_gguf_order(plans[name], t) for t in fisher.get(name, [])]
                return [t for t in mapped if t.columns.shape[0] == n and (
                    t.matrix is None or t.matrix.shape == (n_rows, n))] or [_unknown_term(fisher, n)]
            for imx in (measured, estimated):  # the loss weighs columns by the best importance known
                imp = _importance(imx, name, (n,))
                if imp is not None:
                    return [LossTerm(sens.scale[name], imp)]
            col = sens.column_weights.get(name)
            return [LossTerm(sens.scale[name], col if col is not None and col.shape[0] == n else np.ones(n, np.float32))]

        errors = measure_errors(base.tensors, cands, read, stored.quantize, stored.importance, terms,
                                workers=threads or os.cpu_count() or 1, report=report, cancel=cancel)
        if sensitivity == "runtime" and source == "weights":
            errors, source, keep = _probed(base, errors, cands, read, stored.quantize_whole, stored.importance,
                                           write_probe_base, threads, warnings, report, cancel)
    finally:
        reader.close()
    return Measured(errors, source, warnings, keep=keep)


def _exact_checker(base: ConversionPlan, stored: _Stored, cancel: CancelToken
                   ) -> Callable[[list[tuple[str, str]]], dict[tuple[str, str], bool]]:
    """``exact([(name, type), ...])``: for each, whether every row of that tensor is stored losslessly
    by that type, with the importance the converter will pass (reads the tensors again)."""
    from quantpress.core.gguf.convert import _checked_slabs, _open_reader

    plans = {t.name: t for t in base.tensors}

    def exact(choices: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        check = _open_reader(base)
        try:
            stored.prepare(lambda t: _checked_slabs(check, t), cancel)
            return {(name, ggml_type): all(
                rows_exact(x.reshape(-1, plans[name].shape[-1]), ggml_type, stored.quantize_whole,
                           stored.importance(name, int(plans[name].shape[-1])))
                for x in _checked_slabs(check, plans[name])) for name, ggml_type in choices}
        finally:
            check.close()

    return exact


def _probed(base: ConversionPlan, errors: dict[str, TensorErrors], cands: dict[str, tuple[str, ...]],
            read: Callable[[TensorPlan], Any], quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray],
            importance: Callable[[str, int], np.ndarray | None], write_base: Callable[[Path], Path], threads: int,
            warnings: list[str], report: Report, cancel: CancelToken) -> tuple[dict[str, TensorErrors], str, bool]:
    """``errors`` (the weights estimate's losses) scaled by each category's factor measured through
    llama.cpp's runtime (core/gguf/runtime_probe.py) and the source 'runtime'; unchanged and 'weights',
    with a warning, where the runtime cannot run the model. Last: whether the result may be kept
    (not where the probe failed: the room for its copy may be there next time)."""
    from quantpress.core.calibration.text import default_calibration_text
    from quantpress.core.gguf import runtime_probe as rp
    from quantpress.core.quant import decode

    points = rp.probe_points(errors, cands, {t.name: t.n_elements for t in base.tensors})

    def stored(t: TensorPlan, ggml_type: str) -> np.ndarray:
        x = rp.read_all(read, t)
        return decode(quantize(x, ggml_type, importance(t.name, x.shape[1])), ggml_type, x.shape[1])

    try:
        measured = rp.probe_factors(base.tensors, points, stored, write_base, default_calibration_text(),
                                    threads=threads, report=report, cancel=cancel)
    except (RuntimeError, ValueError, OSError) as exc:  # llama.cpp cannot load it, no room for the copy
        warnings.append(f"sensitivity estimated from the weights alone: the runtime probe failed ({exc})")
        return errors, "weights", False
    if not measured:
        warnings.append("sensitivity estimated from the weights alone: no tensor the runtime probe could measure")
        return errors, "weights", True
    return rp.calibrated(errors, points, measured), "runtime", True


def _in_gguf_order(t: TensorPlan, term: LossTerm) -> LossTerm:
    """A Fisher matrix (the HF weight's rows) with the converter's row transforms applied, so its rows
    line up with the GGUF tensor's (llama's q/k RoPE permutation, a truncated vocabulary)."""
    if term.matrix is None:
        return term
    from quantpress.core.gguf.source import _permute_rows

    m = term.matrix
    for tr in t.transforms:
        kind, _, arg = tr.partition(":")
        if kind == "permute":
            m = m[_permute_rows(m.shape[0], int(arg))]
        elif kind == "rows":
            m = m[: int(arg)]
    return dataclasses.replace(term, matrix=m)


def _unknown_term(fisher: dict[str, list[LossTerm]], n: int) -> LossTerm:
    """A tensor the pass did not see (no hooked module): the median loss per unit of squared error."""
    per_unit = [t.scale * float(np.mean(t.matrix if t.matrix is not None else t.columns))
                * (float(np.mean(t.rows)) if t.rows is not None else 1.0) for ts in fisher.values() for t in ts]
    return LossTerm(float(np.median(per_unit)) if per_unit else 1.0, np.ones(n, np.float32))


def _available_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _fisher_unavailable(base: ConversionPlan) -> str | None:
    """Why the Fisher pass cannot run for this plan's source (None: it can)."""
    import importlib.util

    from quantpress.core.model import SourceKind

    if base.source_kind != SourceKind.HF_FOLDER.value or not base.local_path:
        return "the source is not a Hugging Face folder"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return "torch/transformers are not installed"
    if not any(Path(base.local_path).glob("*.safetensors")):
        return "no safetensors weights"
    fp32_bytes = 4 * sum(t.n_elements for t in base.tensors)
    if fp32_bytes > FISHER_RAM_SHARE * _available_ram():
        return f"the model in float32 ({fp32_bytes / 1024**3:.1f} GiB) would not fit in RAM"
    return None
