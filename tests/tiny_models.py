"""Tiny random Hugging Face models, one per architecture quantpress converts, for tests.

Each is a real ``save_pretrained`` folder (config.json, safetensors, tokenizer files with a chat
template) small enough that converting and running it takes well under a second, yet shaped like
the real thing: grouped-query attention, some rows a multiple of 256 (k-quants apply) and some
only of 32 (k-quants fall back), bf16/f16/f32 weights, one sharded checkpoint.

    from tiny_models import tiny_model        # tests/ is on sys.path under pytest
    folder = tiny_model("qwen2", cache_dir)  # built once per cache_dir, then reused

Tokenizers: byte-level BPE (``tokenizers``) in the llama-3, qwen2 and smollm pre-tokenizer styles,
and SentencePiece (``sentencepiece``, byte fallback) for the SPM families. Token ids, not text, are
what tests compare, so the vocabularies only need to be valid, not good.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VOCAB_SIZE = 384

# Enough text to train a few hundred merges: mixed prose, code and dialogue.
CORPUS = """The quick brown fox jumps over the lazy dog. A model that fits in memory is a model you can use.
Quantization stores each weight in fewer bits; the art is choosing which weights can afford it.
def convert(plan, *, report=ignore, cancel=NEVER):
    for tensor in plan.tensors:
        cancel.raise_if_cancelled()
        write(quantize(tensor))
User: How do I make my laptop run a language model? Assistant: Convert it to GGUF and pick a size that fits.
Numbers 0 1 2 3 4 5 6 7 8 9 10 42 256 1024 3.14159 and symbols {}[]()<>=+-*/%&|^~!?@#$ are tokens too.
The rain in Spain stays mainly in the plain; the weather in Lisbon is mild in the winter months.
""" * 8

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '[' + message['role'] + '] ' + message['content'] + "
    "eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)

# Pre-tokenizer regexes as they appear in the real tokenizer.json files.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinySpec:
    """One tiny model: transformers config class and kwargs, tokenizer style, storage dtype."""

    config_class: str
    config: dict[str, Any]
    tokenizer: str  # 'llama3' | 'qwen2' | 'smollm' | 'spm' | 'smollm2' | 'gemma4'
    dtype: str = "bfloat16"
    max_shard_size: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_COMMON = dict(vocab_size=VOCAB_SIZE, num_hidden_layers=2, max_position_embeddings=512, rms_norm_eps=1e-5)

SPECS: dict[str, TinySpec] = {
    # Llama 3 style: BPE (llama-bpe), untied lm_head, GQA 4:2, rows of 256.
    "llama": TinySpec("LlamaConfig", dict(_COMMON, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                          num_key_value_heads=2, tie_word_embeddings=False, rope_theta=500000.0),
                      "llama3", "bfloat16"),
    # SmolLM2 style: tied embeddings, smollm pre-tokenizer, 32-only rows (k-quant fallbacks).
    "smollm": TinySpec("LlamaConfig", dict(_COMMON, hidden_size=96, intermediate_size=256, num_attention_heads=3,
                                           num_key_value_heads=1, tie_word_embeddings=True), "smollm", "bfloat16"),
    # TinyLlama / Llama 2 style: SentencePiece vocab, f16 weights.
    "tinyllama": TinySpec("LlamaConfig", dict(_COMMON, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                              num_key_value_heads=2, tie_word_embeddings=False), "spm", "float16"),
    "mistral": TinySpec("MistralConfig", dict(_COMMON, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                              num_key_value_heads=2, sliding_window=None, tie_word_embeddings=False),
                        "spm", "bfloat16"),
    # Qwen2: q/k/v biases, tied embeddings, sharded checkpoint in f32.
    "qwen2": TinySpec("Qwen2Config", dict(_COMMON, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                          num_key_value_heads=2, tie_word_embeddings=True), "qwen2", "float32",
                      max_shard_size="400KB"),
    "qwen3": TinySpec("Qwen3Config", dict(_COMMON, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                          num_key_value_heads=2, head_dim=64, tie_word_embeddings=True), "qwen2",
                      "bfloat16"),
    # Gemma 3 text: norms stored as w (runtime 1+w), tied, sliding window layers, head_dim given.
    "gemma3": TinySpec("Gemma3TextConfig", dict(_COMMON, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                                num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64,
                                                sliding_window=32, layer_types=["sliding_attention", "full_attention"],
                                                rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1, eos_token_id=2),
                       "spm", "bfloat16"),
    # Phi-3: fused qkv_proj and gate_up_proj.
    "phi3": TinySpec("Phi3Config", dict(_COMMON, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                        num_key_value_heads=4, tie_word_embeddings=False, pad_token_id=0,
                                        bos_token_id=1, eos_token_id=2, original_max_position_embeddings=512),
                     "spm", "bfloat16"),
}

ARCHS: tuple[str, ...] = tuple(SPECS)

# Mixture-of-experts families: a few layers, >= 4 experts, top-2 routing. Tokenizer: SmolLM2's real
# one (copied from the demo model), because llama.cpp's converter identifies a BPE pre-tokenizer by
# the hash of its output and knows SmolLM2's; the reference comparison needs its converter to run.
# extra: router_std (router weights this large keep the top-2 choice clear of near ties, which a
# float rounding would otherwise flip between transformers and llama.cpp), fused (save experts as
# transformers 5 holds them: gate_up_proj [E, 2F, D] and down_proj [E, D, F], not one per expert).
_MOE = dict({k: v for k, v in _COMMON.items() if k != "vocab_size"}, num_hidden_layers=2, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
            num_experts_per_tok=2, tie_word_embeddings=False)
MOE_SPECS: dict[str, TinySpec] = {
    # Qwen3-MoE: per-head q/k norms, 4 experts of width 128 (down rows fall back from k-quants).
    "qwen3moe": TinySpec("Qwen3MoeConfig", dict(_MOE, intermediate_size=512, moe_intermediate_size=128, num_experts=4,
                                                head_dim=64, norm_topk_prob=True), "smollm2", "bfloat16",
                         extra={"router_std": 0.5}),
    # The same family stored fused, as transformers 5 keeps experts in memory.
    "qwen3moe-fused": TinySpec("Qwen3MoeConfig", dict(_MOE, intermediate_size=512, moe_intermediate_size=256,
                                                      num_experts=4, head_dim=64, norm_topk_prob=True),
                               "smollm2", "bfloat16",
                               extra={"router_std": 0.5, "fused": True}),
    # Mixtral: block_sparse_moe.experts.<e>.w1/w2/w3, 8 experts (llama.cpp's n_expert == 8 type rules).
    "mixtral": TinySpec("MixtralConfig", dict(_MOE, hidden_size=128, intermediate_size=256, num_local_experts=8,
                                              rope_theta=1e6, sliding_window=None), "smollm2", "bfloat16",
                        extra={"router_std": 0.5}),
    # Qwen2-MoE: q/k/v biases, routed experts plus a gated shared expert.
    "qwen2moe": TinySpec("Qwen2MoeConfig", dict(_MOE, intermediate_size=512, moe_intermediate_size=128, num_experts=4,
                                                 shared_expert_intermediate_size=256, norm_topk_prob=False),
                         "smollm2", "bfloat16", extra={"router_std": 0.5}),
    # OLMoE: q/k norms over the whole projection (llama.cpp's graph sizes k_norm by n_embd, so no
    # grouped-query attention, as in the real model), 8 experts, f32 storage.
    "olmoe": TinySpec("OlmoeConfig", dict(_MOE, num_key_value_heads=4, intermediate_size=128, num_experts=8,
                                          clip_qkv=None),
                      "smollm2", "float32", extra={"router_std": 0.5}),
    # GLM-4 MoE: a dense first layer, then a sigmoid router with score-correction bias, routed and
    # shared experts, partial RoPE, q/k/v biases; GLM's special tokens added to the tokenizer.
    "glm4moe": TinySpec("Glm4MoeConfig", dict(_MOE, num_hidden_layers=3, intermediate_size=512, moe_intermediate_size=128,
                                              n_routed_experts=8, n_shared_experts=1, first_k_dense_replace=1,
                                              routed_scaling_factor=1.5, norm_topk_prob=True, n_group=1,
                                              topk_group=1, num_nextn_predict_layers=0, attention_bias=True,
                                              head_dim=64, use_qk_norm=False), "smollm2-glm", "bfloat16",
                        extra={"router_std": 0.5}),
    # gpt-oss: experts fused as transformers keeps them (gate_up_proj [E, D, 2F] with gate and up columns
    # interleaved, down_proj [E, F, D]) with biases, a router with a bias, attention sinks, every other
    # layer sliding-window, YaRN RoPE (the config's default).
    "gptoss": TinySpec("GptOssConfig", dict(_MOE, intermediate_size=256, num_local_experts=4, head_dim=64,
                                            sliding_window=16, max_position_embeddings=4096), "smollm2", "bfloat16",
                       extra={"router_std": 0.5}),
    # DeepSeek-V3: multi-head latent attention (q and kv LoRA ranks, kv_b_proj split into k_b/v_b by the
    # converter), a dense first layer, then sigmoid routing in expert groups with a score-correction
    # bias, routed and shared experts, scaled top-k weights.
    "deepseekv3": TinySpec("DeepseekV3Config", dict(_MOE, num_hidden_layers=3, num_key_value_heads=4,
                                                    intermediate_size=512, moe_intermediate_size=128,
                                                    n_routed_experts=8, n_shared_experts=1, first_k_dense_replace=1,
                                                    routed_scaling_factor=2.5, norm_topk_prob=True, n_group=2,
                                                    topk_group=1, q_lora_rank=128, kv_lora_rank=128,
                                                    qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
                                                    scoring_func="sigmoid", rope_interleave=True),
                           "smollm2", "bfloat16", extra={"router_std": 0.5, "score_bias_std": 0.1}),
}
MOE_ARCHS: tuple[str, ...] = tuple(MOE_SPECS)

# Newer dense families and multimodal wrappers (issue 16), checked against llama.cpp's converter like
# the MoE ones: tokenizers its converter accepts (SentencePiece for Gemma/Mistral, SmolLM2's BPE,
# whose pre-tokenizer hash it knows, for the others). extra: model_class (the wrapper class built from
# the top-level config; the language model's keys go into text_config), seed (gemma3-mm: with seed 0
# the Q4_K_M file generates fine through Llama.generate/create_completion, but llama-cpp-python's chat
# loop stops with "failed to find a memory slot" on its SWA cache; seed 1 chats).
_TEXT = dict(_COMMON, hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
_GEMMA3_TEXT = dict(_TEXT, hidden_size=256, intermediate_size=512, head_dim=64, query_pre_attn_scalar=64,
                    sliding_window=32, layer_types=["sliding_attention", "full_attention"], rms_norm_eps=1e-6)
_GEMMA4_TEXT = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=64, global_head_dim=128, max_position_embeddings=512,
                    rms_norm_eps=1e-6, sliding_window=32, final_logit_softcapping=30.0,
                    layer_types=["sliding_attention", "full_attention"] * 2)  # vocabulary: the tokenizer's
_SIGLIP = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=64,
               patch_size=16)
_LLAMA4_TEXT = dict({k: v for k, v in _TEXT.items() if k != "vocab_size"}, num_hidden_layers=4, hidden_size=256,
                    max_position_embeddings=16384,
                    head_dim=64, intermediate_size=128, intermediate_size_mlp=512, num_local_experts=4,
                    num_experts_per_tok=1, interleave_moe_layer_step=2, use_qk_norm=True, attention_chunk_size=8192,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 16.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 1.0,
                                     "original_max_position_embeddings": 8192})
FAMILY_SPECS: dict[str, TinySpec] = {
    # Gemma 2: soft-capped attention and logits, sliding window every other layer, (1 + w) norms.
    "gemma2": TinySpec("Gemma2Config", dict(_TEXT, hidden_size=256, intermediate_size=512, head_dim=64,
                                            query_pre_attn_scalar=64, sliding_window=32, rms_norm_eps=1e-6,
                                            pad_token_id=0), "spm", "bfloat16"),
    # SmolLM3: four layers so the 4th skips RoPE (llama.cpp's fixed no-rope step).
    "smollm3": TinySpec("SmolLM3Config", dict({k: v for k, v in _TEXT.items() if k != "vocab_size"},
                                              num_hidden_layers=4, tie_word_embeddings=True), "smollm2", "bfloat16"),
    # Gemma 3 4B+ layout: the Gemma 3 text model under a SigLIP tower and projector (4 image tokens).
    "gemma3-mm": TinySpec("Gemma3Config", dict(text_config=dict(_GEMMA3_TEXT, pad_token_id=0, bos_token_id=1,
                                                                 eos_token_id=2),
                                               vision_config=_SIGLIP, mm_tokens_per_image=4),
                          "spm", "bfloat16", extra={"model_class": "Gemma3ForConditionalGeneration", "seed": 1}),
    # Mistral Small 3.x layout: a Mistral text model under a Pixtral tower and patch-merger projector.
    "mistral3": TinySpec("Mistral3Config", dict(text_config=dict(_TEXT, model_type="mistral", sliding_window=None,
                                                                 tie_word_embeddings=False, head_dim=32),
                                                vision_config=dict(_SIGLIP, model_type="pixtral", head_dim=32),
                                                spatial_merge_size=2, image_token_index=10, tie_word_embeddings=False),
                         "spm", "bfloat16", extra={"model_class": "Mistral3ForConditionalGeneration"}),
    # Gemma 4 E2B/E4B layout: per-layer embeddings, the last two layers KV-shared with double-wide
    # feed-forwards, sliding (head 64) and global (head 128, proportional RoPE) layers, soft-capped logits.
    "gemma4": TinySpec("Gemma4TextConfig", dict(_GEMMA4_TEXT, hidden_size_per_layer_input=64, num_kv_shared_layers=2,
                                                use_double_wide_mlp=True), "gemma4", "bfloat16"),
    # Gemma 4 31B layout under its vision tower: global layers with one KV head whose values are their
    # keys (attention_k_eq_v: no v_proj), so head_count_kv is per layer; no per-layer embeddings.
    "gemma4-mm": TinySpec("Gemma4Config", dict(text_config=dict(_GEMMA4_TEXT, hidden_size_per_layer_input=0,
                                                                attention_k_eq_v=True, num_global_key_value_heads=1),
                                               vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                                                  num_attention_heads=2, num_key_value_heads=2, head_dim=32),
                                               audio_config=None),
                          "gemma4", "bfloat16", extra={"model_class": "Gemma4ForConditionalGeneration"}),
    # Gemma 4 26B-A4B layout: a routed MoE block (4 experts, top 2, stacked as transformers saves them)
    # beside the dense MLP in every layer; router weights large enough to keep the top-2 clear of ties.
    "gemma4-moe": TinySpec("Gemma4TextConfig", dict(_GEMMA4_TEXT, hidden_size_per_layer_input=0, enable_moe_block=True,
                                                    num_experts=4, top_k_experts=2, moe_intermediate_size=128),
                           "gemma4", "bfloat16", extra={"router_std": 0.5}),
    # Qwen3-VL: Qwen3 text layers with interleaved M-RoPE (sections sum to head_dim / 2), one deepstack layer.
    "qwen3vl": TinySpec("Qwen3VLConfig", dict(
        text_config=dict({k: v for k, v in _TEXT.items() if k != "vocab_size"}, head_dim=64,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [8, 12, 12],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                           patch_size=16, deepstack_visual_indexes=[0], num_position_embeddings=16),
        tie_word_embeddings=True), "smollm2", "bfloat16", extra={"model_class": "Qwen3VLForConditionalGeneration"}),
    # Llama 4 text: four layers so every kind occurs: MoE every 2nd layer (layers 1, 3: one routed
    # expert of 4, top-1, plus the shared expert; layers 0, 2 dense with their own width), RoPE with
    # chunked attention on layers 0-2 and the 4th a NoPE layer with full attention (llama.cpp's fixed
    # step of 4 and chunk of 8192, as the releases have), q/k L2 norm on the RoPE layers, Scout's llama3
    # rope scaling. Experts fused as the checkpoints store them. Tokenizer: SmolLM2's with Llama 4's
    # header/turn tokens and the real Llama 4 chat template (transformers' processing_llama4.chat_template).
    "llama4": TinySpec("Llama4TextConfig", _LLAMA4_TEXT, "smollm2-llama4", "bfloat16",
                       extra={"router_std": 0.5, "model_class": "Llama4ForCausalLM"}),
    # Llama 4 Scout/Maverick layout: the same text model under the vision tower and projector.
    "llama4-mm": TinySpec("Llama4Config", dict(
        text_config=_LLAMA4_TEXT,
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16, vision_output_dim=64, projector_input_dim=64,
                           projector_output_dim=64, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        boi_token_index=1, eoi_token_index=2, image_token_index=3), "smollm2-llama4", "bfloat16",
        extra={"router_std": 0.5, "model_class": "Llama4ForConditionalGeneration"}),
    # Qwen3-VL MoE: the Qwen3-VL text model with every MLP a softmax router over 4 experts (top-2), the
    # experts fused and transposed as the releases store them (gate_up_proj [E, D, 2F], down_proj [E, F, D];
    # D != 2F, so the layouts differ in shape).
    "qwen3vlmoe": TinySpec("Qwen3VLMoeConfig", dict(
        text_config=dict({k: v for k, v in _TEXT.items() if k != "vocab_size"}, hidden_size=256, head_dim=64,
                         moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [8, 12, 12],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=256,
                           patch_size=16, deepstack_visual_indexes=[0], num_position_embeddings=16),
        tie_word_embeddings=False), "smollm2", "bfloat16",
        extra={"router_std": 0.5, "model_class": "Qwen3VLMoeForConditionalGeneration", "release_experts": True}),
}
FAMILY_ARCHS: tuple[str, ...] = tuple(FAMILY_SPECS)
# Multimodal wrappers for the mmproj checks (tests/tiny_mmproj.py adds the Hub files). Mistral 3 with
# three vision layers: llama.cpp's converter maps the projector's linear_1/linear_2 through its
# per-block table ("multi_modal_projector.linear_{bid}"), so a one-layer tower cannot map linear_2.
MM_SPECS: dict[str, TinySpec] = {
    "mistral3-mm": TinySpec("Mistral3Config", dict(FAMILY_SPECS["mistral3"].config,
                                                   vision_config=dict(_SIGLIP, model_type="pixtral", head_dim=32,
                                                                      num_hidden_layers=3)),
                            "spm", "bfloat16", extra={"model_class": "Mistral3ForConditionalGeneration"}),
    # Real-width towers with one layer (llama.cpp's vision compute buffer depends on widths and image
    # size, not on depth): Gemma 3's SigLIP-so400m (896 px, patch 14, 256 image tokens) and Mistral
    # Small 3.1's Pixtral (1024 wide, patch 14, merge 2), for measuring the estimator's compute term.
    "gemma3-mm-wide": TinySpec("Gemma3Config", dict(
        FAMILY_SPECS["gemma3-mm"].config, mm_tokens_per_image=256,
        vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=1, num_attention_heads=16,
                           image_size=896, patch_size=14, vision_use_head=False)),
        "spm", "bfloat16", extra={"model_class": "Gemma3ForConditionalGeneration", "seed": 1}),
    "mistral3-mm-wide": TinySpec("Mistral3Config", dict(
        FAMILY_SPECS["mistral3"].config,
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=1, num_attention_heads=16,
                           image_size=1540, patch_size=14, model_type="pixtral", head_dim=64)),
        "spm", "bfloat16", extra={"model_class": "Mistral3ForConditionalGeneration"}),
}


# --------------------------------------------------------------------------------------------
# tokenizers


def _bpe_tokenizer(style: str) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if style == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False), byte_level])
    elif style == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False), byte_level])
    else:  # smollm: digits split, then GPT-2 byte level with its own regex
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    if style == "llama3":  # Llama 3 adds BOS through its post-processor
        bos = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B",
            special_tokens=[("<|endoftext|>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _write_bpe(folder: Path, style: str) -> dict[str, int]:
    tok = _bpe_tokenizer(style)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "chat_template": CHATML_TEMPLATE, "model_max_length": 512,
        "add_bos_token": style == "llama3",
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                      "normalized": False, "single_word": False}
            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
        },
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return {"bos_token_id": tok.token_to_id("<|endoftext|>"), "eos_token_id": tok.token_to_id("<|im_end|>"),
            "pad_token_id": tok.token_to_id("<|endoftext|>")}


def _write_spm(folder: Path) -> dict[str, int]:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()), model_writer=buf, vocab_size=VOCAB_SIZE,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2, num_threads=1,
        control_symbols=["<|endoftext|>"],  # llama.cpp requires it in models named phi3
    )
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    cfg = {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "chat_template": SPM_TEMPLATE, "model_max_length": 512,
        "legacy": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return {"bos_token_id": 1, "eos_token_id": 2}


GEMMA4_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|turn>' + message['role'] + '\\n' + message['content'] + "
    "'<turn|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|turn>model\\n' }}{% endif %}"
)


def _write_gemma4(folder: Path) -> dict[str, int]:
    """A Gemma 4 style tokenizer.json: BPE over text whose spaces the normalizer turns into '▁', byte
    fallback through <0x..> tokens in the vocabulary (not added tokens), a Sequence decoder: the
    layout llama.cpp's Gemma 4 converter (gguf-py LlamaHfVocab) requires."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|turn>", "<turn|>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials + byte_tokens, show_progress=False))
    tok.save(str(folder / "tokenizer.json"))
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [a for a in data["added_tokens"] if a["content"] not in byte_tokens]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    cfg = {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
           "pad_token": "<pad>", "mask_token": "<mask>", "chat_template": GEMMA4_TEMPLATE, "model_max_length": 512,
           "add_bos_token": True, "add_eos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    n = len(data["model"]["vocab"])
    return {"vocab_size": n, "vocab_size_per_layer_input": n, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}


# GLM's special tokens, which llama.cpp's GLM converter looks up by text.
GLM_SPECIALS = ("[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|observation|>")
# The tokens Llama 4's chat template writes around each turn.
LLAMA4_SPECIALS = ("<|header_start|>", "<|header_end|>", "<|eot|>")


def _copy_smollm2_tokenizer(folder: Path, extra_specials: tuple[str, ...] = ()) -> dict[str, int]:
    """SmolLM2's tokenizer files (49152-token BPE, ChatML template) from the demo model, with
    ``extra_specials`` appended as special tokens."""
    from quantpress.core.demo import ensure_demo_model
    from tokenizers import AddedToken, Tokenizer

    demo = ensure_demo_model()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo / name, folder / name)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if extra_specials:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra_specials])
        tok.save(str(folder / "tokenizer.json"))
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        for t in extra_specials:
            cfg.setdefault("added_tokens_decoder", {})[str(tok.token_to_id(t))] = {
                "content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                "single_word": False}
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return {"vocab_size": tok.get_vocab_size(), "bos_token_id": tok.token_to_id("<|im_start|>"),
            "eos_token_id": tok.token_to_id("<|im_end|>"), "pad_token_id": tok.token_to_id("<|im_end|>")}


def _llama4_tokenizer(folder: Path) -> dict[str, int]:
    """SmolLM2's tokenizer with Llama 4's turn tokens, its chat template and <|eot|> as end of turn."""
    from transformers.models.llama4.processing_llama4 import chat_template

    ids = _copy_smollm2_tokenizer(folder, LLAMA4_SPECIALS)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.update(chat_template=chat_template, eos_token="<|eot|>")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    eot = next(int(i) for i, t in cfg["added_tokens_decoder"].items() if t["content"] == "<|eot|>")
    return {**ids, "eos_token_id": eot}


# --------------------------------------------------------------------------------------------
# models


def build_tiny_model(arch: str, folder: Path, *, seed: int = 0) -> Path:
    """Write the tiny ``arch`` model to ``folder`` (created; must not exist) and return it."""
    import torch
    import transformers

    spec = {**SPECS, **MOE_SPECS, **FAMILY_SPECS, **MM_SPECS}[arch]
    folder.mkdir(parents=True)
    if spec.tokenizer == "gemma4":
        ids = _write_gemma4(folder)
    elif spec.tokenizer == "smollm2-llama4":
        ids = _llama4_tokenizer(folder)
    elif spec.tokenizer.startswith("smollm2"):
        ids = _copy_smollm2_tokenizer(folder, GLM_SPECIALS if spec.tokenizer == "smollm2-glm" else ())
    else:
        ids = _write_spm(folder) if spec.tokenizer == "spm" else _write_bpe(folder, spec.tokenizer)
    kwargs = dict(spec.config)
    text = kwargs
    if "text_config" in kwargs:  # a wrapper: the language model's ids go into its text_config
        text = kwargs["text_config"] = dict(kwargs["text_config"])
    for key, value in ids.items():
        text.setdefault(key, value)
    config = getattr(transformers, spec.config_class)(**kwargs)
    torch.manual_seed(int(spec.extra.get("seed", seed)))
    model_class = (getattr(transformers, spec.extra["model_class"]) if "model_class" in spec.extra
                   else transformers.AutoModelForCausalLM.from_config(config).__class__)
    model = model_class(config)
    with torch.no_grad():  # norms random around 1 (Gemma: around 0), so a wrong +1 or a skipped norm shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                base = 0.0 if arch.startswith(("gemma2", "gemma3")) else 1.0  # Gemma 4's norms are plain w
                p.copy_(base + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif "router_std" in spec.extra and name.endswith(("mlp.gate.weight", "block_sparse_moe.gate.weight", "mlp.router.weight",
                                                              "router.proj.weight", "feed_forward.router.weight")):
                p.copy_(spec.extra["router_std"] * torch.randn_like(p))
        for name, p in model.named_parameters():  # Gemma 4's router scales: ones at init, learned
            if name.endswith(("router.scale", "router.per_expert_scale")):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        for name, b in model.named_buffers():  # Gemma 4's per-layer output scale: 1 at init, learned
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand_like(b))
        if "score_bias_std" in spec.extra:  # DeepSeek's router bias is a buffer, zero at init: make it matter
            for name, b in model.named_buffers():
                if name.endswith("e_score_correction_bias"):
                    b.copy_(spec.extra["score_bias_std"] * torch.randn_like(b))
    with warnings.catch_warnings():  # Llama 4's vision rotary table is a complex buffer; the text model has none
        warnings.filterwarnings("ignore", "Casting complex values to real", UserWarning)
        model = model.to(getattr(torch, spec.dtype))
    save_kwargs: dict[str, Any] = {}
    if spec.max_shard_size:
        save_kwargs["max_shard_size"] = spec.max_shard_size
    model.save_pretrained(folder, **save_kwargs)
    if spec.extra.get("fused"):  # replace the per-expert checkpoint by the in-memory (fused) layout
        from safetensors.torch import save_file

        for f in folder.glob("*.safetensors"):
            f.unlink()
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("lm_head.weight")
                 or not config.tie_word_embeddings}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if spec.extra.get("release_experts"):  # the released layout: transformers 5.25 saves its in-memory one
        _transpose_experts(folder)
    gen = folder / "generation_config.json"
    if gen.exists():
        gen.unlink()
    return folder


def _transpose_experts(folder: Path) -> None:
    """Rewrite the checkpoint with every fused ``experts.gate_up_proj`` / ``experts.down_proj`` transposed
    in its last two dimensions (Qwen3-VL-MoE: transformers holds [E, 2F, D], the releases store [E, D, 2F])."""
    from safetensors.torch import load_file, save_file

    for f in folder.glob("*.safetensors"):
        state = load_file(str(f))
        state = {k: v.transpose(1, 2).contiguous() if k.endswith((".experts.gate_up_proj", ".experts.down_proj"))
                 else v for k, v in state.items()}
        save_file(state, str(f), metadata={"format": "pt"})


def built_once(arch: str, cache_dir: Path, build: Callable[[str, Path], object]) -> Path:
    """The tiny ``arch`` model under ``cache_dir``, made by ``build(arch, folder)`` on first use
    (atomic: built aside, renamed)."""
    target = Path(cache_dir) / f"tiny-{arch}"
    if (target / "config.json").exists():
        return target
    tmp = Path(cache_dir) / f".tiny-{arch}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    build(arch, tmp)
    tmp.rename(target)
    return target


def tiny_model(arch: str, cache_dir: Path) -> Path:
    """The tiny ``arch`` model under ``cache_dir``, built on first use."""
    return built_once(arch, cache_dir, build_tiny_model)


def hf_logprobs(folder: Path, token_ids: list[int]) -> Any:
    """Next-token log-probabilities (n_tokens, vocab) float64 from transformers in float32."""
    import torch
    import transformers

    arch = json.loads((Path(folder) / "config.json").read_text())["architectures"][0]
    model_class = getattr(transformers, arch, transformers.AutoModelForCausalLM)  # wrappers: their own class
    model = model_class.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1).numpy()


def llama_logprobs(gguf_path: Path, ids: list[int]) -> Any:
    """Next-token log-probs from llama.cpp with an F32 KV cache (the F16 default cache alone moves
    real-model log-probs by ~0.02; it is a runtime choice, not part of the file)."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), n_ctx=128, logits_all=True, verbose=False, n_threads=2, type_k=0, type_v=0)
    try:
        llm.eval(ids)
        lg = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    m = lg.max(axis=1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))


TinyFactory = Callable[[str], Path]


def local_and_hub(model: Path, tmp_path: Path) -> tuple[Any, Any]:
    """The ModelInfo of a local copy of ``model`` and what the estimator makes of the same model on the
    Hub: config and tokenizer files only, tensors from config.json. The two folders' names have one
    length: the GGUF metadata holds the name and source path, and another length could move the
    32-byte-aligned data offset."""
    from dataclasses import replace

    from quantpress.core.gguf.source import open_source
    from quantpress.core.model import SourceKind

    folder, hub = tmp_path / "full", tmp_path / "bare"
    shutil.copytree(model, folder)
    hub.mkdir()
    for f in folder.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, hub / f.name)
    local = open_source(folder)
    return local, replace(local, kind=SourceKind.HUB, tensors=(), source=str(hub), local_path=hub, name=hub.name)
