"""The llama.cpp chat backend (GGUF files, through llama-cpp-python).

The ``Llama`` object must be used from one thread only (the GUI's chat runner). Its generator
reuses the KV cache for the common prefix of consecutive prompts, so a second turn only evaluates
the new text.
"""

from __future__ import annotations

import codecs
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantpress.core.chat.llama_loader import kv_cache_bytes, open_llama
from quantpress.core.chat.template import ChatTemplate
from quantpress.core.chat.types import ChatSettings, MemoryUse, Message, Reply, ReplyStats, TokenCallback
from quantpress.core.chat.vision import IMAGE_TOKEN, Projector, find_mmproj, image_bytes
from quantpress.core.errors import InvalidInput, ModelLoadError
from quantpress.core.jobs import NEVER, CancelToken
from quantpress.core.validate import non_finite_output


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class LlamaCppBackend:
    """A GGUF model loaded with the settings that need a reload (context, KV types, GPU layers, threads)."""

    def __init__(self, path: Path, settings: ChatSettings) -> None:
        rss_before = _rss_bytes()
        self._llm, self.shape, self.placement = open_llama(
            path, ctx_tokens=settings.ctx_tokens, kv_type_k=settings.kv_type_k, kv_type_v=settings.kv_type_v,
            gpu_layers=settings.gpu_layers, n_cpu_moe=settings.n_cpu_moe, threads=settings.threads,
            seed=settings.seed)
        self._rss_delta = _rss_bytes() - rss_before
        self.path = Path(path)
        self.load_settings = settings
        self.ctx_tokens = int(self._llm.n_ctx())
        model = self._llm._model  # llama-cpp-python's model wrapper: token texts for the template
        bos, eos = self._llm.token_bos(), self._llm.token_eos()
        self._template = ChatTemplate(
            self.shape.chat_template,
            bos_token=model.token_get_text(bos) if bos >= 0 else "",
            eos_token=model.token_get_text(eos) if eos >= 0 else "",
        )
        self._add_bos = self._wants_bos()
        self.projector: Projector | None = None
        self._pending: tuple[list[int], Any] | None = None  # an image prompt's tokens and its mtmd chunks
        self.mmproj = find_mmproj(self.path)
        # why images cannot be attached ("" when they can): the GUI says it as it is
        self.image_problem = "" if self.mmproj else "no mmproj-*.gguf vision projector file beside the model"
        if self.mmproj is not None:
            try:
                # on the GPU when the model's layers are (the estimator counts it there too)
                on_gpu = int(self._llm.model_params.n_gpu_layers) != 0
                self.projector = Projector(self._llm, self.mmproj, settings.threads, use_gpu=on_gpu)
            except ModelLoadError as exc:
                self.image_problem = str(exc)

    @property
    def uses_fallback_template(self) -> bool:
        return self._template.uses_fallback

    def _wants_bos(self) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_get_add_bos(self._llm._model.vocab))

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        images = [img for m in messages for img in m.images]
        if images and self.projector is None:
            raise InvalidInput(f"This model cannot take images: {self.image_problem}.")
        if self.projector is not None and images:  # one media marker per image, before the message's text
            marker = self.projector.marker
            messages = [Message(m.role, "".join(marker + "\n" for _ in m.images) + m.content) for m in messages]
        rendered = self._template.render(messages)
        self._stop_strings = rendered.stop_strings
        add_bos = self._add_bos and not rendered.includes_bos
        if self.projector is None or not images:
            return list(self._llm.tokenize(rendered.text.encode("utf-8"), add_bos=add_bos, special=True))
        chunks, tokens = self.projector.tokenize(rendered.text, [image_bytes(p) for p in images], add_bos)
        self._drop_pending()
        self._pending = (tokens, chunks)
        return tokens

    def _drop_pending(self) -> None:
        if self._pending is not None and self.projector is not None:
            self.projector.free_chunks(self._pending[1])
        self._pending = None

    def generate(
        self,
        prompt_tokens: Sequence[int],
        settings: ChatSettings,
        max_new_tokens: int,
        on_token: TokenCallback | None = None,
        cancel: CancelToken = NEVER,
    ) -> Reply:
        import llama_cpp

        llm = self._llm
        llm.set_seed(settings.seed if settings.seed is not None else random.randrange(2**31))
        llama_cpp.llama_perf_context_reset(llm.ctx)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = getattr(self, "_stop_strings", ())
        text, n_text_tokens, n_sampled, finish = "", 0, 0, "length"
        t_start = time.perf_counter()
        t_first = t_last = t_start
        prompt = list(prompt_tokens)
        if IMAGE_TOKEN in prompt:  # encode the images and fill the cache; generate() then finds it all cached
            if self._pending is None or self._pending[0] != prompt or self.projector is None:
                raise InvalidInput("this image prompt was not prepared by encode_chat; send the message again")
            prompt = self.projector.prefill(llm, self._pending[1])
            self._drop_pending()
        tokens = llm.generate(
            prompt,
            top_k=settings.top_k,
            top_p=settings.top_p,
            min_p=0.0,
            temp=settings.temperature,
            repeat_penalty=settings.repeat_penalty,
        )
        for token in tokens:
            t_last = time.perf_counter()
            if n_sampled == 0:
                t_first = t_last
                _refuse_non_finite_logits(llm, self.path)
            n_sampled += 1
            if cancel.cancelled:
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            piece = decoder.decode(llm.detokenize([token]))
            text += piece
            n_text_tokens += 1
            if stops and any(s in text for s in stops):
                text = _cut_at_stop(text, stops)
                finish = "stop"
                break
            if on_token is not None:
                on_token(piece)
            if n_text_tokens >= max_new_tokens:
                break
        tokens.close()
        text += decoder.decode(b"", final=True)
        perf = llama_cpp.llama_perf_context(llm.ctx)
        stats = ReplyStats(
            prompt_tokens=int(perf.n_p_eval),
            generated_tokens=n_sampled,
            prompt_seconds=float(perf.t_p_eval_ms) / 1000.0,
            generation_seconds=t_last - t_first,
            finish_reason=finish,
        )
        return Reply(text=text, tokens=n_text_tokens, stats=stats)

    def memory(self) -> MemoryUse:
        s = self.load_settings
        return MemoryUse(
            model_bytes=self.shape.file_bytes,
            kv_cache_bytes=kv_cache_bytes(self.shape, self.ctx_tokens, s.kv_type_k, s.kv_type_v),
            rss_delta_bytes=self._rss_delta,
            placement=self.placement.describe(self.shape.n_layers),
        )

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and tests)."""
        return self._llm

    def close(self) -> None:
        self._drop_pending()
        if self.projector is not None:  # before the model it was bound to
            self.projector.close()
            self.projector = None
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


def _refuse_non_finite_logits(llm: Any, path: Path) -> None:
    """InvalidModel when the prompt's last logits hold NaN or Inf: the weights do, and every token
    sampled from them would be noise ("....")."""
    import llama_cpp
    import numpy as np

    n_vocab = int(llama_cpp.llama_vocab_n_tokens(llm._model.vocab))
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    if not np.isfinite(logits).all():
        raise non_finite_output(path.name)


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min(text.find(s) for s in stops if s in text)
    return text[:cut]
