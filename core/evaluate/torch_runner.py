"""Evaluate Hugging Face folders in torch, chunk by chunk, the way runner.py evaluates GGUFs with llama.cpp.

Two kinds of folder:
- an AWQ output (compressed-tensors pack-quantized or AutoAWQ GEMM), or a GPTQ, FP8 or NF4 output
  (core/hfquant): loaded by the AWQ backend (core/awq/backend.py), every int4 linear multiplied by torch's
  int4 weight-only kernel, FP8/NF4 weights dequantized at load;
- a plain (unquantized) Hugging Face folder, e.g. the model AWQ started from: float32 in torch, the
  natural reference for an AWQ output ("KL-divergence to the original").

The chunking is runner.py's (llama.cpp's perplexity tool): chunks of ``ctx_tokens`` with a fresh
context each, BOS replacing the first token when the tokenizer adds one, the second half scored. There
is no KV cache to quantize here, so only the default (f16) KV type is accepted for a folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.chat.types import KVCacheType
from quantpress.core.errors import InvalidInput, InvalidModel, ModelLoadError
from quantpress.core.validate import non_finite_weights

AWQ_KIND, HF_KIND = "awq", "hf"


def folder_kind(path: Path) -> str | None:
    """'awq' (an AWQ checkpoint), 'hf' (an unquantized HF folder with safetensors) or None."""
    if not path.is_dir() or not (path / "config.json").is_file():
        return None
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    qc = config.get("quantization_config") if isinstance(config, dict) else None
    if qc:
        from quantpress.core.awq.backend import awq_format

        return AWQ_KIND if awq_format(path) is not None else None
    return HF_KIND if any(path.glob("*.safetensors")) else None


def folder_vocab_size(path: Path) -> int:
    """The output width of the model's head (config.json ``vocab_size``)."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"{path}: no readable config.json ({exc}); not a Hugging Face model folder") from None
    cfg = config.get("text_config", config) if "vocab_size" not in config else config
    if not isinstance(cfg, dict) or "vocab_size" not in cfg:
        raise InvalidModel(f"{path.name}/config.json has no vocab_size")
    return int(cfg["vocab_size"])


def folder_bytes(path: Path) -> int:
    """Bytes of the folder's weight files (what the model costs on disk; tokenizer files excluded)."""
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _load_model(path: Path, kind: str) -> Any:
    import torch

    if kind == AWQ_KIND:
        from quantpress.core.awq.backend import load_awq_model

        awq_model, _fallbacks = load_awq_model(path)
        return awq_model
    from transformers import AutoModelForCausalLM

    # use_safetensors=True: a pytorch_model.bin beside the safetensors is never unpickled.
    loaded: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True,
                                                       trust_remote_code=False, use_safetensors=True,
                                                       output_loading_info=True)
    model, info = loaded  # with output_loading_info: (model, what was missing or mismatched)
    missing = sorted(info.get("missing_keys") or ()) + sorted(k for k, *_ in info.get("mismatched_keys") or ())
    if missing:
        raise InvalidModel(f"{path.name}: the weights do not match config.json: {len(missing)} tensors the model "
                           f"needs are missing or of another shape (e.g. {missing[0]}); it would run on random "
                           "numbers. Use the complete, matching checkpoint")
    refuse_non_finite(model, path)
    return model.eval()


def refuse_non_finite(model: Any, path: Path) -> None:
    """InvalidModel naming the first parameter with NaN or Inf values (results would be garbage)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise non_finite_weights(path.name, name)


class TorchChunkRunner:
    """A folder loaded for evaluation; same interface as runner.ChunkRunner."""

    def __init__(self, path: Path, ctx_tokens: int, kv_type: KVCacheType = KVCacheType.F16,
                 threads: int | None = None, flash_attn: bool | None = None, device: str = "auto") -> None:
        """``device``: "auto" (CUDA when torch sees a GPU, else the CPU as before), "cpu" or "cuda". On
        CUDA an AWQ model's int4 linears take their dequantize-per-call path (core/awq/backend.py)."""
        import torch
        from quantpress.core.calibration.collect import resolve_device
        from quantpress.core.calibration.text import load_tokenizer
        from quantpress.core.validate import check_torch_folder

        kind = folder_kind(path)
        if kind is None:
            raise InvalidInput(f"{path}: this folder is neither a quantized output quantpress can run (config.json "
                               "with a compressed-tensors pack-quantized or float-quantized, AWQ GEMM, GPTQ v1 or "
                               "bitsandbytes NF4 quantization_config) nor a Hugging Face model folder with safetensors "
                               "weights; evaluate a .gguf file or such a folder.")
        check_torch_folder(path)  # before transformers: no custom code, sound headers, config and layers
        if kv_type != KVCacheType.F16 or flash_attn:
            raise InvalidInput(f"{path.name} is a folder evaluated in torch, which keeps no quantized KV cache and "
                               "has no flash-attention switch; KV-cache and flash-attention options apply to GGUF files.")
        if threads:
            torch.set_num_threads(threads)
        self.ctx_tokens = ctx_tokens
        self.kind = kind
        self.flash_attn = False
        self.device = resolve_device(device)
        try:
            self._model = _load_model(path, kind).to(self.device)
            # The whole text is tokenized at once and cut into chunks here (load_tokenizer lifts
            # the model's length limit, whose only effect would be a warning).
            self._tokenizer = load_tokenizer(path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name}: cannot load the model for evaluation ({exc})") from exc
        self.n_vocab = int(self._model.config.vocab_size)
        self.path = path

    def add_bos(self) -> bool:
        """Whether the tokenizer puts BOS in front of a text (llama.cpp's ``add_bos`` of the vocab)."""
        bos = self._tokenizer.bos_token_id
        return bos is not None and self._tokenizer("a")["input_ids"][:1] == [bos]

    def tokenize(self, text: str) -> np.ndarray:
        """The text's tokens with BOS when the tokenizer adds one; special tokens in the text not parsed."""
        ids: list[int] = self._tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if self.add_bos():
            ids = [int(self._tokenizer.bos_token_id), *ids]
        return np.asarray(ids, dtype=np.int32)

    def chunks(self, tokens: np.ndarray, n_chunks: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """For each chunk: (float32 logits [n_scored, n_vocab], int32 target tokens [n_scored])."""
        import torch
        from quantpress.core.evaluate.runner import chunk_inputs

        first = self.ctx_tokens // 2
        bos = self._tokenizer.bos_token_id if self.add_bos() else None
        for chunk, targets in chunk_inputs(tokens, self.ctx_tokens, n_chunks, bos):
            with torch.no_grad():
                ids = torch.from_numpy(chunk.astype(np.int64))[None].to(self.device)
                logits = self._model(ids).logits[0, first : self.ctx_tokens - 1]
            yield logits.float().cpu().numpy().copy(), targets

    def close(self) -> None:
        self._model = None
