"""The vision projector of a multimodal wrapper as llama.cpp's ``mmproj-<name>-<type>.gguf``.

What llama.cpp's converter writes with ``--mmproj`` (convert_hf_to_gguf.py of llama-cpp-python
0.3.36: MmprojModel in conversion/base.py, Gemma3VisionModel in conversion/gemma.py,
LlavaVisionModel in conversion/llava.py), as tables: one :class:`Projector` per wrapper class with
its tensor renames (regex over the checkpoint name -> GGUF name), per-tensor type rules and the
``clip.*`` keys. The file is written like a text conversion: header first (sizes are known from the
plan), then each tensor streamed in row slabs through :class:`~quantpress.core.gguf.source.HFReader`,
to a temporary name renamed when complete.

Departures, each documented in docs/ARCHITECTURE.md:
- Gemma 3: both tower layouts are read, the Hub's ``vision_tower.vision_model.*`` and the
  ``vision_tower.embeddings.*`` / ``vision_tower.encoder.*`` transformers 5.25 saves (llama.cpp's table
  knows only the first and stops on the second).
- Mistral 3 (Pixtral projector): ``v.token_embd.img_break``, the text embedding row of ``[IMG_BREAK]``,
  is written. llama.cpp's LlavaVisionModel means to write it, but MmprojModel.filter_tensors drops every
  ``language_model.`` tensor first, so its file lacks the tensor and its own runtime (clip.cpp) refuses
  to load it ("unable to find tensor v.token_embd.img_break").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import Keys
from quantpress.core.errors import InvalidInput, InvalidModel
from quantpress.core.gguf import layout
from quantpress.core.gguf.source import HFReader, TensorPlan, list_hf_tensors
from quantpress.core.jobs import NEVER, CancelToken

KV = tuple[str, Any, str]
MMPROJ_TYPES = ("F16", "Q8_0")  # what llama.cpp's converter offers for projectors (plus F32/BF16)
FILE_TYPES = {"F16": 1, "Q8_0": 7}  # llama_ftype MOSTLY_F16 / MOSTLY_Q8_0
_SLAB_ROWS = 4096

# Processor defaults when a checkpoint has no preprocessor_config.json (transformers' image processors:
# Gemma3ImageProcessor uses IMAGENET_STANDARD_MEAN/STD, PixtralImageProcessor OPENAI_CLIP_MEAN/STD).
_SIGLIP_MEAN_STD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
_CLIP_MEAN_STD = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])

# A type rule: (regex over the checkpoint's tensor name, type). "F16|F32": F16 in an F16 file, F32
# otherwise (MmprojModel.tensor_force_quant's patch_embd / patch_merger rule).
TypeRule = tuple[str, str]


@dataclass(frozen=True)
class Projector:
    """One projector family: how llama.cpp's converter names, types and describes it."""

    projector_type: str  # clip.projector_type
    renames: tuple[tuple[str, str], ...]  # (regex, GGUF name; \\1.. from the match) after normalize
    type_rules: tuple[TypeRule, ...]  # first match wins, before the 1-D -> F32 rule
    skip: tuple[str, ...] = ()  # regexes of tower tensors llama.cpp leaves out
    transforms: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = ()  # (regex, config -> transform)
    normalize: tuple[tuple[str, str], ...] = ()  # regex substitutions applied to names first
    default_mean_std: tuple[list[float], list[float]] = _SIGLIP_MEAN_STD
    extra_kv: Callable[[dict[str, Any], dict[str, Any]], list[KV]] | None = None  # (config, preprocessor)
    img_break: bool = False  # writes v.token_embd.img_break (Pixtral)


_SIGLIP_LAYER = r"vision_tower\.vision_model\.encoder\.layers\.(\d+)\."
_PIXTRAL_LAYER = r"vision_tower\.transformer\.layers\.(\d+)\."


def _gemma3_kv(config: dict[str, Any], pre: dict[str, Any]) -> list[KV]:
    """Gemma3VisionModel.set_gguf_parameters: the scale factor only when it is not 4 (the default)."""
    vision = config["vision_config"]
    kv: list[KV] = [(Keys.Clip.PROJECTOR_TYPE, "gemma3", "STRING"),
                    (Keys.ClipVision.Attention.LAYERNORM_EPS, float(vision.get("layer_norm_eps", 1e-6)), "FLOAT32"),
                    (Keys.ClipVision.USE_GELU, True, "BOOL")]
    # image tokens per image: the processor's image_seq_length (llama.cpp reads only that, default 256);
    # quantpress falls back to the config's mm_tokens_per_image, the same number in Gemma 3 checkpoints.
    seq = int(pre.get("image_seq_length", config.get("mm_tokens_per_image", 256)))
    scale = (int(vision["image_size"]) // int(vision["patch_size"])) // int(seq ** 0.5)
    if scale > 0 and scale != 4:
        kv.append((Keys.ClipVision.Projector.SCALE_FACTOR, scale, "UINT32"))
    return kv


def _pixtral_kv(config: dict[str, Any], pre: dict[str, Any]) -> list[KV]:
    """LlavaVisionModel.set_gguf_parameters for model_type 'pixtral'."""
    vision = config["vision_config"]
    act = vision.get("hidden_act", "gelu")
    acts = {"gelu": Keys.ClipVision.USE_GELU, "silu": Keys.ClipVision.USE_SILU}
    if act not in acts:
        raise InvalidModel(f"vision_config.hidden_act '{act}' is not one llama.cpp's Pixtral projector runs "
                           "(gelu, silu)")
    kv: list[KV] = [(Keys.Clip.PROJECTOR_TYPE, "pixtral", "STRING"),
                    (Keys.ClipVision.Attention.LAYERNORM_EPS, float(vision.get("layer_norm_eps", 1e-5)), "FLOAT32"),
                    (acts[act], True, "BOOL")]
    if "spatial_merge_size" in config:
        kv.append((Keys.ClipVision.SPATIAL_MERGE_SIZE, int(config["spatial_merge_size"]), "UINT32"))
    return kv


def _vision_heads(config: dict[str, Any]) -> int:
    return int(config["vision_config"]["num_attention_heads"])


PROJECTORS: dict[str, Projector] = {
    # SigLIP tower + Gemma's soft-embedding norm and input projection (tensor_mapping.py's MMPROJ names).
    "Gemma3ForConditionalGeneration": Projector(
        projector_type="gemma3",
        normalize=((r"^model\.", ""), (r"^vision_tower\.(embeddings|encoder|post_layernorm|head)\.",
                                       r"vision_tower.vision_model.\1."),
                   (r"_weight$", ".weight")),
        skip=(r"vision_model\.head\.",),
        renames=(
            (r"vision_tower\.vision_model\.embeddings\.patch_embedding\.(weight|bias)", r"v.patch_embd.\1"),
            (r"vision_tower\.vision_model\.embeddings\.position_embedding\.weight", "v.position_embd.weight"),
            (_SIGLIP_LAYER + r"layer_norm1\.(weight|bias)", r"v.blk.\1.ln1.\2"),
            (_SIGLIP_LAYER + r"layer_norm2\.(weight|bias)", r"v.blk.\1.ln2.\2"),
            (_SIGLIP_LAYER + r"self_attn\.q_proj\.(weight|bias)", r"v.blk.\1.attn_q.\2"),
            (_SIGLIP_LAYER + r"self_attn\.k_proj\.(weight|bias)", r"v.blk.\1.attn_k.\2"),
            (_SIGLIP_LAYER + r"self_attn\.v_proj\.(weight|bias)", r"v.blk.\1.attn_v.\2"),
            (_SIGLIP_LAYER + r"self_attn\.out_proj\.(weight|bias)", r"v.blk.\1.attn_out.\2"),
            (_SIGLIP_LAYER + r"mlp\.fc1\.(weight|bias)", r"v.blk.\1.ffn_up.\2"),
            (_SIGLIP_LAYER + r"mlp\.fc2\.(weight|bias)", r"v.blk.\1.ffn_down.\2"),
            (r"vision_tower\.vision_model\.post_layernorm\.(weight|bias)", r"v.post_ln.\1"),
            (r"multi_modal_projector\.mm_input_projection\.weight", "mm.input_projection.weight"),
            (r"multi_modal_projector\.mm_soft_emb_norm\.weight", "mm.soft_emb_norm.weight"),
        ),
        # Gemma3VisionModel.tensor_force_quant (llama.cpp issue 13025): the projection stays F16, the
        # embeddings F32; the position embedding is F32 by the base converter's V_ENC_EMBD_POS rule.
        type_rules=((r"input_projection", "F16"), (r"\.embeddings\.", "F32")),
        # Gemma3RMSNorm computes (1 + w): the converter stores the +1 for the projector's norm only.
        transforms=((r"soft_emb_norm\.weight$", lambda _c: "add:1.0"),),
        default_mean_std=_SIGLIP_MEAN_STD,
        extra_kv=_gemma3_kv,
    ),
    # Pixtral tower + Mistral 3's RMS norm, patch merger and two-layer MLP.
    "Mistral3ForConditionalGeneration": Projector(
        projector_type="pixtral",
        normalize=((r"^model\.", ""),),
        renames=(
            (r"vision_tower\.patch_conv\.weight", "v.patch_embd.weight"),
            (r"vision_tower\.ln_pre\.weight", "v.pre_ln.weight"),
            (_PIXTRAL_LAYER + r"attention\.q_proj\.(weight|bias)", r"v.blk.\1.attn_q.\2"),
            (_PIXTRAL_LAYER + r"attention\.k_proj\.(weight|bias)", r"v.blk.\1.attn_k.\2"),
            (_PIXTRAL_LAYER + r"attention\.v_proj\.(weight|bias)", r"v.blk.\1.attn_v.\2"),
            (_PIXTRAL_LAYER + r"attention\.o_proj\.(weight|bias)", r"v.blk.\1.attn_out.\2"),
            (_PIXTRAL_LAYER + r"attention_norm\.weight", r"v.blk.\1.ln1.weight"),
            (_PIXTRAL_LAYER + r"ffn_norm\.weight", r"v.blk.\1.ln2.weight"),
            (_PIXTRAL_LAYER + r"feed_forward\.gate_proj\.weight", r"v.blk.\1.ffn_gate.weight"),
            (_PIXTRAL_LAYER + r"feed_forward\.up_proj\.weight", r"v.blk.\1.ffn_up.weight"),
            (_PIXTRAL_LAYER + r"feed_forward\.down_proj\.weight", r"v.blk.\1.ffn_down.weight"),
            (r"multi_modal_projector\.norm\.weight", "mm.input_norm.weight"),
            (r"multi_modal_projector\.patch_merger\.merging_layer\.weight", "mm.patch_merger.weight"),
            (r"multi_modal_projector\.linear_([12])\.(weight|bias)", r"mm.\1.\2"),
        ),
        type_rules=((r"patch_conv\.weight|patch_merger\.merging_layer\.weight", "F16|F32"),),
        # LlamaModel.permute of q/k rows (llama.cpp's 2-D RoPE pairs interleaved halves)
        transforms=((r"attention\.[qk]_proj\.", lambda c: f"permute:{_vision_heads(c)}"),),
        default_mean_std=_CLIP_MEAN_STD,
        extra_kv=_pixtral_kv,
        img_break=True,
    ),
}


@dataclass(frozen=True)
class MmprojPlan:
    """The projector file of a conversion: where, which type, its tensors (file order) and keys."""

    path: str
    format: str  # F16 or Q8_0
    tensors: tuple[TensorPlan, ...]
    tensor_types: dict[str, str]
    metadata: tuple[tuple[str, Any, str], ...]
    file_bytes: int
    metadata_bytes: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MmprojPlan:
        tensors = tuple(TensorPlan(**{**t, "shape": tuple(t["shape"]), "transforms": tuple(t["transforms"]),
                                      "parts": tuple(tuple(p) for p in t.get("parts", ()))}) for t in d["tensors"])
        return cls(d["path"], d["format"], tensors, dict(d["tensor_types"]),
                   tuple((str(k), v, str(t)) for k, v, t in d["metadata"]), int(d["file_bytes"]),
                   int(d["metadata_bytes"]))


def projector_for(hf_class: str) -> Projector | None:
    return PROJECTORS.get(hf_class)


def _tensor_type(p: Projector, source: str, shape: tuple[int, ...], fmt: str) -> str:
    """The converter's choice (base.py prepare_tensors): forced rules, 1-D and biases F32, else the
    file type; Q8_0 falls back to F16 for rows that are not a multiple of its 32-value block."""
    chosen = next((t for rx, t in p.type_rules if re.search(rx, source)), "")
    if chosen == "F16|F32":
        chosen = "F16" if fmt == "F16" else "F32"
    if len(shape) <= 1:
        return "F32"
    chosen = chosen or fmt
    if chosen == "Q8_0" and shape[-1] % layout.block_size("Q8_0"):
        return "F16"
    return chosen


def _preprocessor(folder: Path) -> dict[str, Any]:
    """preprocessor_config.json, then processor_config.json's image_processor, merged (MmprojModel)."""
    merged: dict[str, Any] = {}
    for name, inner in (("preprocessor_config.json", "media_proc_cfg"), ("processor_config.json", "image_processor")):
        path = folder / name
        if path.is_file():
            try:
                cfg = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidModel(f"{path}: not readable JSON ({exc}); download the model's processor files "
                                   "again") from None
            merged.update({**cfg, **(cfg.get(inner) or {})})
    return merged


def _token_id(folder: Path, text: str) -> int | None:
    """The id of the added token ``text`` (tokenizer_config.json's added_tokens_decoder, then
    tokenizer.json's added_tokens: LlavaVisionModel.get_token_id)."""
    cfg_path, tok_path = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if cfg_path.is_file():
        for i, t in (json.loads(cfg_path.read_text()).get("added_tokens_decoder") or {}).items():
            if t.get("content") == text:
                return int(i)
    if tok_path.is_file():
        for t in json.loads(tok_path.read_text()).get("added_tokens", []):
            if t.get("content") == text:
                return int(t["id"])
    return None


def plan_mmproj(folder: Path, hf_class: str, config: dict[str, Any], model_name: str, out_dir: Path,
                fmt: str = "F16") -> tuple[MmprojPlan | None, tuple[str, ...]]:
    """The projector plan for the wrapper checkpoint in ``folder`` (None when the class has no projector
    llama.cpp runs), and warnings (a projector that cannot be written is a warning, not an error: the
    text model still converts)."""
    from quantpress.core.gguf.moe import param_counts

    p = projector_for(hf_class)
    fmt = fmt.upper()
    if fmt not in MMPROJ_TYPES:
        raise InvalidInput(f"projector type '{fmt}' is not offered; choose {', '.join(MMPROJ_TYPES)} or none")
    if p is None or not isinstance(config.get("vision_config"), dict) or not any(folder.glob("*.safetensors")):
        return None, ()  # no projector llama.cpp runs, or the weights are not downloaded yet
    tensors: list[TensorPlan] = []
    names: dict[str, str] = {}
    for info in sorted(list_hf_tensors(folder), key=lambda t: t.name):
        name = info.name
        for rx, sub in p.normalize:
            name = re.sub(rx, sub, name)
        if not name.startswith(("vision_tower.", "multi_modal_projector.")) or any(re.search(s, name) for s in p.skip):
            continue
        gguf_name = next((re.sub(f"^{rx}$", sub, name) for rx, sub in p.renames if re.fullmatch(rx, name)), None)
        if gguf_name is None:  # a tower llama.cpp would not run: the text model still converts
            return None, (f"{model_name}: projector tensor '{info.name}' is not one llama.cpp's {p.projector_type} "
                          "projector knows; the vision projector (mmproj) is not written",)
        transforms = tuple(f(config) for rx, f in p.transforms if re.search(rx, name))
        tensors.append(TensorPlan(gguf_name, tuple(info.shape), info.name, info.file, info.dtype, transforms))
        names[gguf_name] = name
    if not tensors:
        return None, ()
    if p.img_break:
        text_hidden = int(config.get("text_config", config).get("hidden_size", 0))
        tok = _token_id(folder, "[IMG_BREAK]")
        embed = next((t for t in list_hf_tensors(folder) if t.name.endswith("embed_tokens.weight")), None)
        if tok is None or embed is None:
            return None, (f"{model_name}: no [IMG_BREAK] token in the tokenizer files, which llama.cpp's Pixtral "
                          "projector needs; the vision projector (mmproj) is not written",)
        tensors.append(TensorPlan("v.token_embd.img_break", (text_hidden,), embed.name, embed.file, embed.dtype,
                                  (f"row:{tok}",)))
        names["v.token_embd.img_break"] = embed.name
    types = {t.name: _tensor_type(p, names[t.name], t.shape, fmt) for t in tensors}
    kv = _metadata(p, folder, config, model_name, fmt, param_counts((t.name, t.shape) for t in tensors).size_label)
    head, total = layout.encode_preamble(layout.encode_metadata(kv), len(kv),
                                         [(t.name, t.shape, types[t.name]) for t in tensors])
    path = Path(out_dir) / f"mmproj-{model_name}-{fmt}.gguf"
    return MmprojPlan(str(path), fmt, tuple(tensors), types, tuple(kv), total, len(head)), ()


def _metadata(p: Projector, folder: Path, config: dict[str, Any], name: str, fmt: str, size_label: str) -> list[KV]:
    """general.* and clip.* keys in the order MmprojModel.set_gguf_parameters writes them."""
    from quantpress.core.gguf.plan import quantpress_version

    vision = config["vision_config"]
    text = config.get("text_config", config)
    pre = _preprocessor(folder)
    mean, std = pre.get("image_mean", p.default_mean_std[0]), pre.get("image_std", p.default_mean_std[1])
    cv = Keys.ClipVision
    kv: list[KV] = [
        (Keys.General.ARCHITECTURE, "clip", "STRING"),
        (Keys.General.TYPE, "mmproj", "STRING"),
        (Keys.General.NAME, name, "STRING"),
        (Keys.General.BASENAME, re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "model", "STRING"),
        (Keys.General.SIZE_LABEL, size_label, "STRING"),
        (Keys.General.QUANTIZED_BY, "quantpress", "STRING"),
        (Keys.General.FILE_TYPE, FILE_TYPES[fmt], "UINT32"),
        (Keys.Clip.HAS_VISION_ENCODER, True, "BOOL"),
        (cv.PROJECTION_DIM, int(text["hidden_size"]), "UINT32"),
        (cv.IMAGE_SIZE, int(vision["image_size"]), "UINT32"),
        (cv.PATCH_SIZE, int(vision["patch_size"]), "UINT32"),
        (cv.EMBEDDING_LENGTH, int(vision["hidden_size"]), "UINT32"),
        (cv.FEED_FORWARD_LENGTH, int(vision["intermediate_size"]), "UINT32"),
        (cv.BLOCK_COUNT, int(vision["num_hidden_layers"]), "UINT32"),
        (cv.Attention.HEAD_COUNT, int(vision["num_attention_heads"]), "UINT32"),
        (cv.IMAGE_MEAN, [float(v) for v in mean], "ARRAY[FLOAT32]"),
        (cv.IMAGE_STD, [float(v) for v in std], "ARRAY[FLOAT32]"),
    ]
    kv += p.extra_kv(config, pre) if p.extra_kv else []
    kv += [(Keys.General.QUANTIZATION_VERSION, 2, "UINT32"),
           ("quantpress.version", quantpress_version(), "STRING"),
           ("quantpress.source", str(folder), "STRING"),
           ("quantpress.format", fmt, "STRING")]
    return kv


def _slabs(reader: HFReader, t: TensorPlan) -> Any:
    """Float32 row slabs of a projector tensor; ``row:<i>`` takes one row of the text embedding."""
    row = next((int(tr.split(":")[1]) for tr in t.transforms if tr.startswith("row:")), None)
    if row is None:
        yield from reader.slabs(t, _SLAB_ROWS)
        return
    yield from reader._rows(t.source_file, t.source, row, row + 1, 1)


def write_mmproj(plan: MmprojPlan, folder: Path, config: dict[str, Any], *, cancel: CancelToken = NEVER) -> int:
    """Write ``plan`` from the checkpoint in ``folder``; the file's size in bytes. Temporary name, renamed
    when complete; removed on any failure or cancel."""
    from quantpress.core.gguf.convert import encode

    final = Path(plan.path)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    reader = HFReader(folder, config, None)
    written = 0
    try:
        with tmp.open("wb") as f:
            head, _ = layout.encode_preamble(layout.encode_metadata(list(plan.metadata)), len(plan.metadata),
                                             [(t.name, t.shape, plan.tensor_types[t.name]) for t in plan.tensors])
            f.write(head)
            written = len(head)
            for t in plan.tensors:
                cancel.raise_if_cancelled()
                for x in _slabs(reader, t):  # (rows, n_per_row) float32
                    data = encode(x, plan.tensor_types[t.name], None, 0)
                    f.write(np.ascontiguousarray(data).view(np.uint8).reshape(-1).data)
                    written += data.nbytes
                f.write(b"\0" * (layout.pad(written) - written))
                written = layout.pad(written)
        if written != plan.file_bytes:
            raise InvalidModel(f"{final.name}: wrote {written:,} bytes, planned {plan.file_bytes:,}")
        tmp.replace(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
    return written
