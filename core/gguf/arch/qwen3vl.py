"""Qwen3-VL text model (Qwen3VLForConditionalGeneration): Qwen3 layers under llama.cpp's 'qwen3vl'
architecture, whose graph applies interleaved M-RoPE (rope.dimension_sections from the config's
mrope_section, written by common_rope_kv) and adds the vision tower's deepstack features to the
first n_deepstack_layers layers when an image is present; the vision tower ('model.visual.*') is left
out (conversion/qwen3vl.py Qwen3VLTextModel)."""

from __future__ import annotations

from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config


def deepstack_kv(config: Config) -> list[KV]:
    vision = config.get("vision_config") or {}
    return [("n_deepstack_layers", len(vision.get("deepstack_visual_indexes") or []), "UINT32")]


SPEC = ArchSpec(name="qwen3vl", gguf_arch="qwen3vl", hf_classes=("Qwen3VLForConditionalGeneration",),
                hparams=TEXT_HPARAMS, extra_kv=deepstack_kv)
