"""Turn a conversation into prompt text: the model's own chat template (Jinja, from the GGUF
metadata ``tokenizer.chat_template``) or, when it has none or it fails to render, a plain fallback
that the UI announces (``uses_fallback``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quantpress.core.chat.types import Message, Role

# The fallback: a neutral transcript; generation stops when the model starts the user's next line.
FALLBACK_ROLE_PREFIX = {Role.SYSTEM: "", Role.USER: "User: ", Role.ASSISTANT: "Assistant: "}
FALLBACK_STOP = ("\nUser:",)


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    includes_bos: bool  # the template wrote BOS itself: do not add another one
    stop_strings: tuple[str, ...]


class ChatTemplate:
    def __init__(self, template: str | None, bos_token: str, eos_token: str) -> None:
        self._formatter: Any = None
        self.uses_fallback = True
        if template:
            try:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)
                self.uses_fallback = False
            except Exception:  # a template jinja cannot compile: fall back, the UI says so
                self._formatter = None

    def render(self, messages: Sequence[Message]) -> RenderedPrompt:
        if self._formatter is not None:
            try:
                result = self._formatter(messages=[{"role": m.role.value, "content": m.content} for m in messages])
                return RenderedPrompt(result.prompt, includes_bos=True, stop_strings=())
            except Exception:  # e.g. raise_exception() in the template for an unexpected role order
                self.uses_fallback = True
        return _render_fallback(messages)


def _render_fallback(messages: Sequence[Message]) -> RenderedPrompt:
    lines = [FALLBACK_ROLE_PREFIX[m.role] + m.content for m in messages if m.content or m.role != Role.SYSTEM]
    text = "\n".join(lines) + "\n" + FALLBACK_ROLE_PREFIX[Role.ASSISTANT].rstrip()
    return RenderedPrompt(text, includes_bos=False, stop_strings=FALLBACK_STOP)
