"""Chat backend for AWQ checkpoints (compressed-tensors pack-quantized or AutoAWQ GEMM folders):
the model runs in torch with every quantized linear kept as int4 and multiplied by torch's CPU
int4 weight-only kernel (``aten._weight_int4pack_mm_for_cpu``), never dequantized to a dense copy.

Kernel convention (checked against a dense reference in tests): w = (q - 8) · scale + zero_k with
q the unsigned nibble; AWQ's w = (q - z) · scale gives zero_k = (8 - z) · scale. Activations,
scales and zeros are float32 (the kernel accepts bf16/fp16/fp32), so the fp16 checkpoint scales
are used exactly.

Many rows at once (a prompt, an evaluation chunk): torch's float32 int4 kernel has no vectorized path
on CPU (only bf16 has one): beyond one row it is far slower than dequantizing the weight and using the
dense matmul (~70× for a 512-token chunk, ``python -m benchmarks.awq --kernel``, BENCHMARKS.md). So from ``DENSE_MIN_ROWS`` rows
on, a linear dequantizes its own weight for the duration of that call (one layer's float32 weight at a
time, from the nibbles it also keeps) and uses the dense matmul: exact, and the model stays int4 in
memory. Token-by-token generation (one row) runs on the int4 kernel. A linear whose output width is not a multiple of 16 (the kernel's packing unit)
falls back to a dequantized dense weight; ``AwqBackend.dense_fallbacks`` lists them.
CUDA is not implemented here: this backend runs on the CPU.

The chat session finds it through core/chat/backend.py's table of built-in runtimes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantpress.core.awq.quantizer import dequantize, unpack_autoawq, unpack_compressed_tensors
from quantpress.core.chat.template import ChatTemplate
from quantpress.core.chat.types import ChatSettings, MemoryUse, Message, Reply, ReplyStats, TokenCallback
from quantpress.core.errors import InvalidModel, ModelLoadError
from quantpress.core.hfquant.formats import DENSE_FORMATS, GPTQ_KEYS, dequantize_dense, unpack_gptq
from quantpress.core.jobs import NEVER, CancelToken
from quantpress.core.validate import non_finite_weights


def awq_format(folder: Path) -> str | None:
    """'compressed-tensors', 'autoawq', or one of core/hfquant/formats.py's ('fp8', 'gptq', 'nf4'), or None,
    from config.json's quantization_config: the quantized folders this backend loads."""
    cfg = folder / "config.json"
    if not folder.is_dir() or not cfg.is_file():
        return None
    from quantpress.core.validate import read_config

    qc = read_config(folder).get("quantization_config") or {}
    if not isinstance(qc, dict):
        return None
    if qc.get("quant_method") == "compressed-tensors" and qc.get("format") == "pack-quantized":
        return "compressed-tensors"
    if qc.get("quant_method") == "awq" and str(qc.get("version", "gemm")).lower() == "gemm":
        return "autoawq"
    from quantpress.core.hfquant.formats import folder_format

    return folder_format(qc)


DENSE_MIN_ROWS = 4  # from this many rows on, dequantize-per-call + dense matmul (see module docstring)


def make_int4_linear(q: Any, scale: Any, zero: Any, group_size: int, bias: Any) -> Any:
    """An nn.Module computing x @ W'^T + b with W' = (q - zero) · scale: the int4 kernel for few rows,
    the weight dequantized for this call only for many rows (see module docstring)."""
    import torch

    class Int4Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out_features, self.in_features = q.shape
            self.group_size = group_size
            q32 = q.to(torch.int32).contiguous()
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q32, 1)
            self.register_buffer("packed", packed)
            self.register_buffer("nibbles", (q32[:, 0::2] | (q32[:, 1::2] << 4)).to(torch.uint8))  # (N, K/2)
            s = scale.float().T.contiguous()  # (G, N)
            zk = ((8.0 - zero.float().T) * s).contiguous()
            self.register_buffer("scales_and_zeros", torch.stack([s, zk], dim=-1).contiguous())
            self.register_buffer("bias", None if bias is None else bias.float())

        def dense_weight(self) -> Any:
            """W' (N, K) float32, computed as the kernel does: (q - 8) · s + zero_k per group."""
            n, k = self.out_features, self.in_features
            nibbles: Any = self.nibbles
            scales_and_zeros: Any = self.scales_and_zeros
            q_all = torch.stack([nibbles & 0xF, nibbles >> 4], dim=-1).reshape(n, k).float()
            sz = scales_and_zeros.transpose(0, 1)  # (N, G, 2)
            w = (q_all.reshape(n, -1, self.group_size) - 8.0) * sz[..., :1] + sz[..., 1:]
            return w.reshape(n, k)

        def forward(self, x: Any) -> Any:
            shape = x.shape
            rows = x.reshape(-1, shape[-1]).float().contiguous()
            if rows.shape[0] >= DENSE_MIN_ROWS or rows.is_cuda:  # the packed layout is the CPU kernel's
                bias: Any = self.bias
                y = torch.nn.functional.linear(rows, self.dense_weight(), bias)
            else:
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size,
                                                               self.scales_and_zeros)
                if self.bias is not None:
                    y = y + self.bias
            return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    return Int4Linear()


def _load_state(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if not state:
        raise InvalidModel(f"{folder}: no safetensors weights")
    return state


_CT_KEYS = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape")
_AWQ_KEYS = ("qweight", "qzeros", "scales")
# format -> (tensor suffixes of a quantized linear, the first one naming it; unpack to (q, scale, zero))
_UNPACK: dict[str, tuple[tuple[str, ...], Any]] = {
    "compressed-tensors": (_CT_KEYS, unpack_compressed_tensors), "autoawq": (_AWQ_KEYS, unpack_autoawq),
    "gptq": (GPTQ_KEYS, unpack_gptq)}


def load_awq_model(folder: Path) -> tuple[Any, list[str]]:
    """The transformers model with int4 linears (CPU, float32 elsewhere) and the dense fallbacks."""
    import torch
    from quantpress.core.validate import check_torch_folder
    from transformers import AutoConfig, AutoModelForCausalLM

    check_torch_folder(folder)  # before transformers: no custom code, sound headers and config
    fmt = awq_format(folder)
    if fmt is None:
        raise InvalidModel(f"{folder}: not an AWQ checkpoint (no pack-quantized or AWQ GEMM quantization_config)")
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = _load_state(folder)
    if fmt in DENSE_FORMATS:  # no CPU kernel for these: weights dequantized once, exactly
        state = dequantize_dense(fmt, state)
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise non_finite_weights(folder.name, name)
    keys, unpack = _UNPACK.get(fmt, ((), None))
    modules = sorted({k[: -len("." + keys[0])] for k in state if k.endswith("." + keys[0])}) if keys else []
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.to_empty(device="cpu")  # before the int4 modules go in: to_empty would wipe their buffers
    for sub in model.modules():
        if getattr(sub, "_non_persistent_buffers_set", None):
            model._init_weights(sub)
    dense: dict[str, Any] = {}
    fallbacks: list[str] = []
    for name in modules:
        q, scale, zero = unpack({k: state.pop(f"{name}.{k}") for k in keys if f"{name}.{k}" in state})
        gs = q.shape[1] // scale.shape[1]
        bias = state.pop(f"{name}.bias", None)
        if q.shape[0] % 16:
            fallbacks.append(name)
            dense[f"{name}.weight"] = dequantize(q, scale, zero, gs)
            if bias is not None:
                dense[f"{name}.bias"] = bias
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, make_int4_linear(q, scale, zero, gs, bias))
    state.update(dense)
    _load_float_state(model, state, modules, fallbacks)
    model.eval()
    return model, fallbacks


def _load_float_state(model: Any, state: dict[str, Any], modules: list[str], fallbacks: list[str]) -> None:
    import torch

    quantized = set(modules) - set(fallbacks)
    own = {k: v for k, v in model.state_dict().items()
           if k.rpartition(".")[0] not in quantized}
    missing = [k for k in own if k not in state and not k.endswith("lm_head.weight")]
    if missing:
        raise InvalidModel(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[0]}")
    with torch.no_grad():
        for k, t in own.items():
            src = state.get(k)
            if src is not None:
                t.copy_(src.to(t.dtype))
    if getattr(model.config, "tie_word_embeddings", False) or "lm_head.weight" not in state:
        model.tie_weights()


class AwqBackend:
    """An AWQ folder loaded for chat (see module docstring). One thread at a time."""

    def __init__(self, path: Path, settings: ChatSettings) -> None:
        import psutil
        from quantpress.core.calibration.text import load_tokenizer

        rss0 = psutil.Process().memory_info().rss
        self.path = Path(path)
        try:
            self.model, self.dense_fallbacks = load_awq_model(self.path)
            self.tokenizer = load_tokenizer(self.path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.path.name}: cannot load the AWQ checkpoint ({exc})") from exc
        self._rss_delta = int(psutil.Process().memory_info().rss - rss0)
        max_ctx = int(getattr(self.model.config, "max_position_embeddings", settings.ctx_tokens))
        self.ctx_tokens = min(settings.ctx_tokens, max_ctx)
        tok = self.tokenizer
        self._template = ChatTemplate(getattr(tok, "chat_template", None), bos_token=tok.bos_token or "",
                                      eos_token=tok.eos_token or "")
        self._stops: tuple[str, ...] = ()

    @property
    def uses_fallback_template(self) -> bool:
        return bool(self._template.uses_fallback)

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        rendered = self._template.render(messages)
        self._stops = rendered.stop_strings
        ids: list[int] = self.tokenizer(rendered.text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        adds_bos = bos is not None and self.tokenizer("a")["input_ids"][:1] == [bos]
        if adds_bos and not rendered.includes_bos:
            ids = [bos, *ids]
        return ids

    def logits(self, ids: Any) -> Any:
        """Float32 logits (batch, seq, vocab) for token ids (batch, seq): the eval entry point."""
        import torch

        with torch.no_grad():
            return self.model(ids).logits.float()

    def generate(self, prompt_tokens: Sequence[int], settings: ChatSettings, max_new_tokens: int,
                 on_token: TokenCallback | None = None, cancel: CancelToken = NEVER) -> Reply:
        import torch

        gen = torch.Generator().manual_seed(settings.seed if settings.seed is not None else random.randrange(2**31))
        eos = set(_as_list(self.model.config.eos_token_id) + _as_list(self.tokenizer.eos_token_id))
        ids = torch.tensor([list(prompt_tokens)])
        history = list(prompt_tokens)
        text, out_ids, finish = "", [], "length"
        t0 = time.perf_counter()
        t_first = t_last = t0
        cache, cache_kw = _new_kv_cache(self.model)
        with torch.no_grad():
            for step in range(max_new_tokens):
                if cancel.cancelled:
                    finish = "cancelled"
                    break
                if len(history) >= self.ctx_tokens:
                    break
                # The cache object is filled in place; the output's own cache field is not read
                # (its name changed with the argument's).
                out = self.model(ids, use_cache=True, **{cache_kw: cache})
                token = _sample(out.logits[0, -1].float(), history, settings, gen)
                t_last = time.perf_counter()
                if step == 0:
                    t_first = t_last
                if token in eos:
                    finish = "stop"
                    break
                history.append(token)
                out_ids.append(token)
                new_text = str(self.tokenizer.decode(out_ids, skip_special_tokens=True))
                piece, text = new_text[len(text):], new_text
                if self._stops and any(s in text for s in self._stops):
                    text = text[: min(text.find(s) for s in self._stops if s in text)]
                    finish = "stop"
                    break
                if on_token is not None:
                    on_token(piece)
                ids = torch.tensor([[token]])
        stats = ReplyStats(prompt_tokens=len(prompt_tokens), generated_tokens=len(out_ids) + (finish == "stop"),
                           prompt_seconds=t_first - t0, generation_seconds=t_last - t_first, finish_reason=finish)
        return Reply(text=text, tokens=len(out_ids), stats=stats)

    def memory(self) -> MemoryUse:
        n_bytes = sum(b.numel() * b.element_size() for b in self.model.buffers())
        n_bytes += sum(p.numel() * p.element_size() for p in self.model.parameters())
        return MemoryUse(model_bytes=int(n_bytes), kv_cache_bytes=0, rss_delta_bytes=self._rss_delta,
                         placement="CPU (torch int4 kernels)")

    def close(self) -> None:
        self.model = None


def _new_kv_cache(model: Any) -> tuple[Any, str]:
    """An empty KV cache and the keyword the model's ``forward`` takes it under: ``cache`` since
    transformers 5.25 deprecated ``past_key_values`` (a FutureWarning on every call), which older
    releases still require."""
    import inspect

    from transformers import DynamicCache

    params = inspect.signature(model.forward).parameters
    return DynamicCache(), ("cache" if "cache" in params else "past_key_values")


def _as_list(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)]


def _sample(logits: Any, history: list[int], s: ChatSettings, gen: Any) -> int:
    import torch

    if s.repeat_penalty != 1.0 and history:
        idx = torch.tensor(sorted(set(history[-64:])))
        vals = logits[idx]
        logits[idx] = torch.where(vals > 0, vals / s.repeat_penalty, vals * s.repeat_penalty)
    if s.temperature <= 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k > 0:
        kth = torch.topk(logits, min(s.top_k, logits.numel())).values[-1]
        logits = torch.where(logits < kth, torch.full_like(logits, -float("inf")), logits)
    probs = torch.softmax(logits, -1)
    if 0 < s.top_p < 1:
        sp, si = torch.sort(probs, descending=True)
        keep = sp.cumsum(0) - sp < s.top_p
        probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


