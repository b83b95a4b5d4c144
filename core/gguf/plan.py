"""Conversion plans: what ``convert`` will write, computed without reading any weight.

    plan = plan_conversion(open_model("SmolLM2-135M-Instruct"), ["Q4_K_M", "Q8_0"], Path("out"))
    plan.outputs[0].file_bytes      # exact size of the file convert() will write
    plan.outputs[0].tensor_types    # {'blk.0.attn_q.weight': 'Q5_0', ...}
    plan.save("plan.json"); ConversionPlan.load("plan.json")   # show, save, replay

A plan is pure and fast: config, tokenizer files and safetensors/GGUF headers only (for a Hub
model, config and tokenizer files are enough). The metadata bytes come from the same encoder the
writer uses, so ``file_bytes`` is exact, not an estimate.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import Keys
from quantpress.core.choices import CalibrationKind as CalibrationKind  # re-exported: plans own it
from quantpress.core.dequant import bits_per_weight, dequantized_tensors, quantization_config, scheme_for
from quantpress.core.errors import InvalidInput, InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf import layout
from quantpress.core.gguf.arch import (
    KV,
    ArchSpec,
    arch_kv,
    block_count,
    merged_text_config,
    spec_for_hf_class,
)
from quantpress.core.gguf.mixes import MIXES, MixContext, Policy, llama_order, tensor_types
from quantpress.core.gguf.mmproj import MmprojPlan, plan_mmproj
from quantpress.core.gguf.source import (
    TensorPlan,
    list_hf_tensors,
    map_hf_tensors,
    synthesize_hf_tensors,
    with_nextn_count,
)
from quantpress.core.gguf.tokenizer import tokenizer_kv
from quantpress.core.model import ModelInfo, SourceKind
from quantpress.core.quant import QuantEngine

# Calibration kinds that need no text; "weights" is what plan_conversion uses when given none.
TEXTLESS_CALIBRATIONS = (CalibrationKind.WEIGHTS.value, CalibrationKind.NONE.value)

# Source GGUF keys that a requantized file gets afresh.
_REPLACED_PREFIXES = (Keys.General.FILE_TYPE, Keys.General.QUANTIZATION_VERSION, Keys.General.QUANTIZED_BY,
                      "quantpress.", "quantize.imatrix.", "split.")


@dataclass(frozen=True)
class Overrides:
    """User choices on top of a mix: output/token-embedding types and (regex, type) rules."""

    output_type: str | None = None
    token_embd_type: str | None = None
    tensor_types: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Calibration:
    """Where importance weights come from (see CalibrationKind) and, for FILE and IMATRIX, the file."""

    # NONE is what a saved plan without this field meant; plan_conversion's default is WEIGHTS.
    kind: CalibrationKind = CalibrationKind.NONE
    path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", CalibrationKind.parse(self.kind, "calibration"))

    @property
    def label(self) -> str:
        named = self.kind in (CalibrationKind.FILE, CalibrationKind.IMATRIX)
        return Path(self.path or "").name if named else self.kind.value

    @property
    def from_data(self) -> bool:
        """True when the importance comes from activations on text (llama.cpp's 'has imatrix')."""
        return self.kind not in TEXTLESS_CALIBRATIONS


# The format name of an output whose per-tensor types were chosen for a target (core/gguf/best_fit.py),
# and the general.file_type it gets: llama.h's LLAMA_FTYPE_GUESSED (no single llama_ftype describes a
# free mix; llama.cpp prints it as "(guessed)" and loads it like any other).
MIXED_FORMAT = "MIXED"
MIXED_FTYPE = 1024


@dataclass(frozen=True)
class TargetSummary:
    """What a MIXED output's types were chosen for, and what the choice is expected to give.

    kind: 'size' | 'bpw' | 'fit-gpu' | 'fit-ram'; budget_bytes: the bytes the choice had to stay
    under (file, tensor data, or memory at the context); expected_kld: the solver's predicted
    KL-divergence (core/calibration/fisher.py), a ranking aid, not a measurement."""

    kind: str
    label: str
    budget_bytes: int
    expected_kld: float
    memory_bytes: int = 0  # estimated memory at ctx_tokens (fit targets), 0 otherwise
    ctx_tokens: int = 0
    kv_type: str = ""
    seconds: float = 0.0  # planning time (measuring the errors included)
    sensitivity: str = ""  # where the per-tensor sensitivity came from: 'fisher' (calibration pass) or 'weights'


@dataclass(frozen=True)
class OutputPlan:
    path: str
    format: str
    tensor_types: dict[str, str]
    file_bytes: int
    metadata_bytes: int  # header + KV + tensor infos + alignment padding


@dataclass(frozen=True)
class ConversionPlan:
    source: str
    source_kind: str
    local_path: str | None
    architecture: str  # HF class or GGUF architecture of the source
    gguf_arch: str
    tensors: tuple[TensorPlan, ...]  # in file order
    outputs: tuple[OutputPlan, ...]
    policy: Policy = Policy.QUANTPRESS
    overrides: Overrides = Overrides()
    calibration: Calibration = Calibration()
    threads: int = 0
    # Which quantizer writes the blocks (core.quant.engine_for, ENGINE_CHOICES). Not written into the GGUF
    # (the file size must not depend on it); the sidecar's plan records it. Older plans replay as "auto".
    engine: QuantEngine = QuantEngine.AUTO
    model_name: str = ""
    quantpress_version: str = ""
    warnings: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    target: TargetSummary | None = None  # set when the types were chosen for a target (MIXED output)
    # the vision projector file written beside the model (multimodal wrappers; core/gguf/mmproj.py)
    mmproj: MmprojPlan | None = None

    def __post_init__(self) -> None:  # saved plans and older callers give plain strings
        object.__setattr__(self, "policy", Policy.parse(self.policy, "policy"))
        object.__setattr__(self, "engine", QuantEngine.parse(self.engine, "quantization engine"))

    @property
    def source_bytes(self) -> int:
        return sum(_src_nbytes(t) for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConversionPlan:
        d = dict(d)
        d["tensors"] = tuple(TensorPlan(**{**t, "shape": tuple(t["shape"]), "transforms": tuple(t["transforms"]),
                                           "parts": tuple((str(a), str(b)) for a, b in t.get("parts", ()))})
                             for t in d["tensors"])
        d["outputs"] = tuple(OutputPlan(**o) for o in d["outputs"])
        ov = d.get("overrides") or {}
        d["overrides"] = Overrides(ov.get("output_type"), ov.get("token_embd_type"),
                                   tuple((str(a), str(b)) for a, b in ov.get("tensor_types", ())))
        d["calibration"] = Calibration(**(d.get("calibration") or {}))
        d["warnings"] = tuple(d.get("warnings", ()))
        d["target"] = TargetSummary(**d["target"]) if d.get("target") else None
        d["mmproj"] = MmprojPlan.from_dict(d["mmproj"]) if d.get("mmproj") else None
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> ConversionPlan:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"{path}: not a quantpress conversion plan ({exc})") from None

    def describe(self) -> str:
        """A short human summary (CLI ``--dry-run``, GUI tooltip)."""
        lines = [f"{self.model_name or self.source} ({self.gguf_arch}, {len(self.tensors)} tensors), "
                 f"policy {self.policy}, calibration {self.calibration.label}"
                 + ("" if self.engine == QuantEngine.AUTO else f", engine {self.engine}")]
        for o in self.outputs:
            counts: dict[str, int] = {}
            for t in o.tensor_types.values():
                counts[t] = counts.get(t, 0) + 1
            mix = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {o.format:7s} {o.file_bytes:>14,d} B  {o.path}  [{mix}]")
        if self.mmproj is not None:
            lines.append(f"  {'mmproj':7s} {self.mmproj.file_bytes:>14,d} B  {self.mmproj.path}  "
                         f"[vision projector, {self.mmproj.format}]")
        if self.target is not None:
            tg = self.target
            lines.append(f"  target {tg.label}: budget {tg.budget_bytes:,} B"
                         + (f", estimated memory {tg.memory_bytes:,} B at {tg.ctx_tokens} tokens ({tg.kv_type} KV)"
                            if tg.memory_bytes else "")
                         + f", expected KLD {tg.expected_kld:.4g} (sensitivity: {tg.sensitivity})")
        return "\n".join(lines + [f"  warning: {w}" for w in self.warnings])


def _src_nbytes(t: TensorPlan) -> int:
    if t.source_dtype in ("BF16", "F16"):
        return int(t.n_elements) * 2
    if (bits := bits_per_weight(t.source_dtype)) is not None:  # a quantized checkpoint's weight (progress only)
        return int(t.n_elements * bits / 8)
    if t.source_dtype in layout.GGML_TYPES and t.source_dtype != "F32":
        return int(layout.tensor_nbytes(t.shape, t.source_dtype))
    return int(t.n_elements) * 4


def quantpress_version() -> str:
    try:
        from importlib.metadata import version

        return version("quantpress")
    except Exception:  # not installed (source checkout): still convert
        return "0+unknown"


# ------------------------------------------------------------------------------------- model facts


def _config(model: ModelInfo) -> dict[str, Any]:
    if model.config:
        return merged_text_config(model.config)
    if model.local_path and (Path(model.local_path) / "config.json").is_file():
        return merged_text_config(json.loads((Path(model.local_path) / "config.json").read_text()))
    raise InvalidModel(f"{model.source}: no config.json; cannot tell the architecture")


def _hf_class(model: ModelInfo, config: dict[str, Any]) -> str:
    archs = config.get("architectures") or [model.architecture]
    return str(archs[0])


@dataclass(frozen=True)
class _Source:
    spec: ArchSpec | None
    tensors: list[TensorPlan]
    kv: list[KV]  # arch + tokenizer (HF) or copied (GGUF) metadata, without general.* we set
    n_layers: int
    n_gqa: int
    warnings: tuple[str, ...]
    n_expert: int = 0


def _hf_source(model: ModelInfo, config: dict[str, Any]) -> _Source:
    spec = spec_for_hf_class(_hf_class(model, config))
    if isinstance(config.get("text_config"), dict):  # a multimodal wrapper: the language model's hparams
        config = {**config, **config["text_config"]}
    if model.local_path is None:
        raise InvalidModel(f"{model.source}: the tokenizer and config files are needed to plan a GGUF; "
                           "download them first")
    folder = Path(model.local_path)
    tok = tokenizer_kv(folder, spec, config)
    n_vocab = len(next(v for k, v, _ in tok if k == Keys.Tokenizer.LIST))
    has_weights = any(folder.glob("*.safetensors"))
    if has_weights:  # a quantized checkpoint is listed dequantized (core/dequant), as model.tensors is
        infos = dequantized_tensors(config, list_hf_tensors(folder), folder.name)
    else:
        infos = list(model.tensors) or synthesize_hf_tensors(spec, config)
    if quantization_config(config) and not has_weights:
        scheme_for(config)  # a Hub model: refuse a format no reader handles before anything is downloaded
    config = dict(with_nextn_count(spec, config, infos))
    tensors = map_hf_tensors(spec, config, infos, n_vocab)
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    n_expert = spec.experts.n_experts(config) if spec.experts else 0
    warnings: tuple[str, ...] = already_quantized(model.name or folder.name, [t.dtype for t in infos])
    norm = spec.experts.norm_topk if spec.experts else None
    if norm is not None and config.get("norm_topk_prob") is not None and bool(config["norm_topk_prob"]) != norm:
        warnings += (f"config.json sets norm_topk_prob={config['norm_topk_prob']}, but llama.cpp's {spec.gguf_arch} "
                    f"graph always {'renormalises' if norm else 'keeps'} the top-k expert weights; "
                    "the GGUF will not compute exactly what the checkpoint does",)
    return _Source(spec, tensors, arch_kv(spec, config) + tok, block_count(spec, config),
                   max(1, n_head // n_kv), warnings, n_expert)


def _gguf_source(model: ModelInfo) -> _Source:
    from quantpress.core.gguf.reader import open_gguf

    path = Path(model.local_path or model.source)
    with open_gguf(path) as g:
        arch = g.architecture
        types = g.value_types
        kv = [(k, v, types[k]) for k, v in g.metadata.items()
              if not k.startswith(_REPLACED_PREFIXES) and k != Keys.General.ARCHITECTURE]
        tensors = [TensorPlan(t.name, t.shape, t.name, str(path), t.ggml_type) for t in g.tensors]
        n_layers = int(g.arch_value("block_count", 0) or 0)
        n_head = int(g.arch_value("attention.head_count", 1) or 1)
        n_kv = int(g.arch_value("attention.head_count_kv", n_head) or n_head)
        n_expert = int(g.arch_value("expert_count", 0) or 0)
    warnings = already_quantized(path.name, [t.source_dtype for t in tensors])
    from quantpress.core.gguf.arch import spec_for_gguf_arch

    return _Source(spec_for_gguf_arch(arch), tensors, kv, n_layers, max(1, n_head // max(1, n_kv)), warnings,
                   n_expert)


def already_quantized(name: str, dtypes: Sequence[str]) -> tuple[str, ...]:
    """The warning for a source whose weights are already quantized (a GGUF k-quant, an FP8/GPTQ/AWQ/MXFP4
    checkpoint): converting cannot win back what that quantization lost."""
    quantized = sorted(set(dtypes) - {"F32", "F16", "BF16", "F64"})
    if not quantized:
        return ()
    return (f"{name} is already quantized ({', '.join(quantized)}); requantizing adds error on top of it, so "
            "quality cannot improve. Convert from the original F16/BF16 weights when you can.",)


# ------------------------------------------------------------------------------------- metadata


def general_kv(plan: ConversionPlan, fmt: str, calibration_tokens: int = 0) -> list[KV]:
    """general.* and quantpress.* keys of one output (numbers fixed-width: sizes stay exact)."""

    from quantpress.core.gguf.moe import param_counts

    counts = param_counts((t.name, t.shape) for t in plan.tensors)
    name = plan.model_name or Path(plan.source).name
    kv: list[KV] = [
        (Keys.General.ARCHITECTURE, plan.gguf_arch, "STRING"),
        (Keys.General.TYPE, "model", "STRING"),
        (Keys.General.NAME, name, "STRING"),
        (Keys.General.BASENAME, re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "model", "STRING"),
        (Keys.General.SIZE_LABEL, counts.size_label, "STRING"),
        (Keys.General.QUANTIZED_BY, "quantpress", "STRING"),
        (Keys.General.FILE_TYPE, MIXES[fmt].ftype if fmt in MIXES else MIXED_FTYPE, "UINT32"),
        (Keys.General.QUANTIZATION_VERSION, 2, "UINT32"),
        ("quantpress.version", plan.quantpress_version, "STRING"),
        ("quantpress.source", plan.source, "STRING"),
        ("quantpress.format", fmt, "STRING"),
        ("quantpress.policy", plan.policy, "STRING"),
        ("quantpress.calibration", plan.calibration.label, "STRING"),
    ]
    if plan.calibration.from_data:
        kv.append(("quantpress.calibration_tokens", int(calibration_tokens), "UINT32"))
    return kv


def output_metadata(plan: ConversionPlan, fmt: str, source_kv: list[KV], calibration_tokens: int = 0) -> list[KV]:
    general = general_kv(plan, fmt, calibration_tokens)
    ours = {k for k, _, _ in general}
    return general + [kv for kv in source_kv if kv[0] not in ours]


def source_metadata(plan: ConversionPlan) -> list[KV]:
    """Re-derive the arch/tokenizer metadata of the plan's source (convert() calls this)."""
    model = _plan_model(plan)
    return _hf_source(model, plan.config).kv if plan.source_kind != SourceKind.GGUF.value else _gguf_source(model).kv


def _plan_model(plan: ConversionPlan) -> ModelInfo:
    kind = SourceKind(plan.source_kind)
    return ModelInfo(source=plan.source, kind=kind, architecture=plan.architecture, gguf_arch=plan.gguf_arch,
                     n_params=0, n_layers=0, n_heads=0, n_kv_heads=0, head_dim=0, head_dim_v=0, hidden_size=0,
                     ffn_size=0, vocab_size=0, context_length=0,
                     local_path=Path(plan.local_path) if plan.local_path else None, config=plan.config)


# ------------------------------------------------------------------------------------- planning


def _output_paths(model: ModelInfo, name: str, formats: Sequence[str], out: Path | None) -> list[Path]:
    if out is None:
        from quantpress.core.outputs import default_output_dir

        out = default_output_dir(model) or Path.cwd()
    out = Path(out)
    if out.suffix.lower() == ".gguf":
        if len(formats) == 1:
            return [out]
        return [out.with_name(f"{out.stem}-{f}.gguf") for f in formats]
    return [out / f"{name}-{f}.gguf" for f in formats]


def plan_conversion(model: ModelInfo, formats: Sequence[str], out: Path | None = None, *,
                    imatrix: str | Path | None = None, calibration: str | Path | None = None,
                    overrides: Overrides = Overrides(), policy: Policy | str = Policy.QUANTPRESS, threads: int = 0,
                    engine: QuantEngine | str = QuantEngine.AUTO, mmproj: str = "F16") -> ConversionPlan:
    """Plan converting ``model`` to each of ``formats`` (see module docstring); ``engine``: see
    ENGINE_CHOICES. Importance: ``imatrix`` (a llama.cpp file) or ``calibration``: "default" (built-in
    text), a .txt/.jsonl path, "none" (plain rounding), or "weights" (estimated from the weights; what
    None means). ``mmproj``: the vision projector's type (F16, Q8_0) for a multimodal wrapper llama.cpp
    has a projector for, written as ``mmproj-<name>-<type>.gguf`` beside the first output; "none" skips it."""
    formats = [f.upper() for f in formats]
    if not formats:
        raise InvalidInput("choose at least one format, e.g. Q4_K_M")
    for f in formats:
        if f not in MIXES:
            raise InvalidInput(f"unknown format '{f}'; choose from {', '.join(MIXES)}")
    if len(set(formats)) != len(formats):
        raise InvalidInput("the same format is listed twice")
    policy = Policy.parse(policy, "policy")
    engine = QuantEngine.parse(engine, "quantization engine")
    if imatrix is not None and calibration is not None:
        raise InvalidInput("give either a calibration text or an imatrix file, not both")
    calib = _calibration(imatrix, calibration)
    for p in (imatrix, calibration if calib.kind == CalibrationKind.FILE else None):
        if p is not None and not Path(p).is_file():
            raise InvalidInput(f"{p}: no such file")
    if model.kind == SourceKind.GGUF:
        config: dict[str, Any] = {}
        src = _gguf_source(model)
        if calib.kind in (CalibrationKind.DEFAULT, CalibrationKind.FILE):
            raise InvalidInput("calibration text needs the original Hugging Face model; for a GGUF source "
                               "pass a llama.cpp imatrix file with --imatrix")
    else:
        config = _config(model)
        src = _hf_source(model, config)
        if quantization_config(config) and calib.kind in (CalibrationKind.DEFAULT, CalibrationKind.FILE):
            # The calibration pass runs the checkpoint's own float linears; a quantized one stores none.
            raise InvalidInput(
                f"calibration text is not supported for an already quantized source ({model.name or model.source}); "
                "convert with the default importance estimated from the (dequantized) weights, with --imatrix FILE, "
                "or with --calibration none")
    gguf_arch = src.spec.gguf_arch if src.spec else (model.gguf_arch or model.architecture)
    name = model.name or Path(model.source).name.removesuffix(".gguf")
    by_name = {t.name: t for t in src.tensors}
    ordered = tuple(by_name[n] for n in llama_order(list(by_name)))
    base = ConversionPlan(
        source=str(model.source), source_kind=model.kind.value,
        local_path=str(model.local_path) if model.local_path else None, architecture=model.architecture,
        gguf_arch=gguf_arch, tensors=ordered, outputs=(), policy=policy, overrides=overrides,
        calibration=calib, threads=threads, engine=engine, model_name=name, quantpress_version=quantpress_version(),
        warnings=src.warnings, config=config)
    ctx = MixContext(n_layers=src.n_layers, n_gqa=src.n_gqa, has_imatrix=calib.from_data, policy=policy,
                     output_type=overrides.output_type, token_embd_type=overrides.token_embd_type,
                     tensor_overrides=overrides.tensor_types,
                     is_70b_llama=gguf_arch == "llama" and src.n_layers == 80 and src.n_gqa > 1,
                     n_expert=src.n_expert)
    shapes = {t.name: t.shape for t in ordered}
    outputs = []
    for fmt, path in zip(formats, _output_paths(model, name, formats, out), strict=False):
        types = tensor_types(shapes, fmt, ctx)
        _check_types(ordered, types)
        if calib.kind == "none":
            _refuse_plain_rounding(fmt, types)
        kv = output_metadata(base, fmt, src.kv)
        head, total = layout.encode_preamble(layout.encode_metadata(kv), len(kv),
                                             [(t.name, t.shape, types[t.name]) for t in ordered])
        outputs.append(OutputPlan(str(path), fmt, types, total, len(head)))
    if len({o.path for o in outputs}) != len(outputs):
        raise InvalidInput("two outputs would be written to the same file")
    projector, warnings = None, base.warnings
    if mmproj.lower() != "none" and model.kind != SourceKind.GGUF and model.local_path is not None:
        projector, more = plan_mmproj(Path(model.local_path), _hf_class(model, config), config, name,
                                      Path(outputs[0].path).parent, mmproj)
        warnings += more
    return dataclasses.replace(base, outputs=tuple(outputs), mmproj=projector, warnings=warnings)


def _calibration(imatrix: str | Path | None, calibration: str | Path | None) -> Calibration:
    if imatrix is not None:
        return Calibration(CalibrationKind.IMATRIX, str(imatrix))
    if calibration is None:
        return Calibration(CalibrationKind.WEIGHTS)
    if str(calibration) in TEXTLESS_CALIBRATIONS + ("default",):  # reserved words (a file: ./default)
        return Calibration(CalibrationKind(str(calibration)))
    return Calibration(CalibrationKind.FILE, str(calibration))


def _refuse_plain_rounding(fmt: str, types: dict[str, str]) -> None:
    """The i-quants llama-quantize refuses without an imatrix are refused here too (mixes_iq)."""
    from quantpress.core.gguf.mixes_iq import tensors_needing_importance

    needing = tensors_needing_importance(types)
    if needing:
        raise InvalidInput(
            f"{fmt} cannot be made with --calibration none: {len(needing)} of its tensors (e.g. {needing[0]} as "
            f"{types[needing[0]]}) need importance weights, as llama.cpp requires an imatrix for them. Use the "
            "default (--calibration weights, estimated from the weights), calibration text (--calibration default "
            "or a file) or --imatrix; or choose IQ3_S, IQ3_M or a k-quant for plain rounding.")


def _check_types(tensors: Sequence[TensorPlan], types: dict[str, str]) -> None:
    for t in tensors:
        if t.shape[-1] % layout.block_size(types[t.name]):
            raise UnsupportedArchitecture(f"tensor {t.name} {t.shape} cannot be stored as {types[t.name]}")
