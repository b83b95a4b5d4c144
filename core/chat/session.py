"""A conversation with one model: history, context-overflow handling, stop.

    session = ChatSession.load("model.Q4_K_M.gguf", ChatSettings(temperature=0.0))
    reply = session.send("What is the capital of France?", on_token=print_piece)
    session.stop()      # from another thread: the running reply ends within one token

Not thread-safe except ``stop()``: call everything else from one thread (the GUI's chat runner).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

from quantpress.core.chat.backend import ChatBackend, load_backend
from quantpress.core.chat.types import (
    ChatSettings,
    MemoryUse,
    Message,
    OverflowPolicy,
    Reply,
    Role,
    TokenCallback,
)
from quantpress.core.errors import InvalidInput
from quantpress.core.jobs import NEVER, CancelToken

# Settings that only change sampling; anything else needs the model reloaded.
SAMPLING_FIELDS = frozenset(
    {"system_prompt", "temperature", "top_p", "top_k", "repeat_penalty", "max_tokens", "seed", "overflow"}
)


class ContextOverflow(InvalidInput):
    """The message (with the system prompt) does not fit in the context, or the policy forbids dropping turns."""


class ChatSession:
    def __init__(self, backend: ChatBackend, settings: ChatSettings) -> None:
        self.backend = backend
        self.settings = settings
        self._history: list[Message] = []  # user/assistant turns, oldest first; no system prompt
        self._lock = threading.Lock()
        self._cancel: CancelToken | None = None

    @classmethod
    def load(cls, path: str | Path, settings: ChatSettings | None = None) -> ChatSession:
        settings = settings or ChatSettings()
        return cls(load_backend(path, settings), settings)

    # -- state ------------------------------------------------------------------------------
    @property
    def messages(self) -> tuple[Message, ...]:
        """The conversation as the model sees it, system prompt first."""
        return tuple(self._with_system(self._history))

    @property
    def uses_fallback_template(self) -> bool:
        """True when the model has no usable chat template and a plain one is used (say so in the UI)."""
        return self.backend.uses_fallback_template

    @property
    def image_problem(self) -> str:
        """Why images cannot be attached to a message ("" when they can: a GGUF whose mmproj file
        llama.cpp loaded)."""
        return str(getattr(self.backend, "image_problem", "this runtime takes no images (GGUF with mmproj only)"))

    def memory(self) -> MemoryUse:
        return self.backend.memory()

    def clear(self) -> None:
        self._history.clear()

    def rewind(self) -> str | None:
        """Forget the last user/assistant exchange and return its user text (for "regenerate"),
        or None when there is no complete exchange to take back."""
        if len(self._history) < 2 or self._history[-2].role is not Role.USER:
            return None
        text = self._history[-2].content
        self._history = self._history[:-2]
        return text

    def configure(self, settings: ChatSettings) -> None:
        """Apply new settings; reload the model only if a load-time setting changed."""
        changed = {
            f.name
            for f in dataclasses.fields(settings)
            if getattr(settings, f.name) != getattr(self.settings, f.name)
        }
        if changed - SAMPLING_FIELDS:
            path = self.backend.path
            self.backend.close()
            self.backend = load_backend(path, settings)
        self.settings = settings

    def close(self) -> None:
        self.backend.close()

    # -- talking ----------------------------------------------------------------------------
    def send(self, text: str, on_token: TokenCallback | None = None, cancel: CancelToken = NEVER,
             images: Sequence[str | Path] = ()) -> Reply:
        """Add a user message (with ``images``: image files, for a GGUF with an mmproj file beside it),
        generate the reply (streamed through ``on_token``), keep both.

        A stopped reply is kept as far as it got, so the next turn sees it."""
        if not text.strip():
            raise InvalidInput("The message is empty.")
        if images and self.image_problem:
            raise InvalidInput(f"This model cannot take images: {self.image_problem}.")
        token = CancelToken()
        with self._lock:
            self._cancel = token
        try:
            history = [*self._history, Message(Role.USER, text, tuple(str(p) for p in images))]
            prompt, dropped = self._fit(history)
            room = self.backend.ctx_tokens - len(prompt)
            reply = self.backend.generate(
                prompt, self.settings, min(self.settings.max_tokens, room), on_token, _Either(token, cancel)
            )
        finally:
            with self._lock:
                self._cancel = None
        self._history = [*history[dropped:], Message(Role.ASSISTANT, reply.text)]
        stats = dataclasses.replace(reply.stats, dropped_turns=dropped // 2)
        return dataclasses.replace(reply, stats=stats)

    def stop(self) -> None:
        """Stop the reply being generated (thread-safe); it ends before the next token is shown."""
        with self._lock:
            if self._cancel is not None:
                self._cancel.cancel()

    # -- internals --------------------------------------------------------------------------
    def _with_system(self, turns: list[Message]) -> list[Message]:
        system = self.settings.system_prompt
        return [Message(Role.SYSTEM, system), *turns] if system else list(turns)

    def _reply_room(self) -> int:
        # Keep room for at least a short answer: the reply budget, capped at a quarter of the context.
        return max(1, min(self.settings.max_tokens, self.backend.ctx_tokens // 4))

    def _fit(self, history: list[Message]) -> tuple[list[int], int]:
        """Prompt tokens for ``history``, dropping the oldest user/assistant pairs if needed."""
        limit = self.backend.ctx_tokens - self._reply_room()
        dropped = 0
        while True:
            prompt = self.backend.encode_chat(self._with_system(history[dropped:]))
            if len(prompt) <= limit:
                return prompt, dropped
            if self.settings.overflow is OverflowPolicy.DROP_OLDEST and len(history) - dropped > 1:
                dropped += 2
                continue
            raise ContextOverflow(self._overflow_message(len(prompt), limit, dropped))

    def _overflow_message(self, n_prompt: int, limit: int, dropped: int) -> str:
        ctx = self.backend.ctx_tokens
        if self.settings.overflow is OverflowPolicy.ERROR and len(self._history) > 0:
            return (
                f"The conversation ({n_prompt} tokens) no longer fits in the context of {ctx} tokens "
                f"(with room for the answer). Clear the chat or raise the context length."
            )
        return (
            f"This message needs {n_prompt} tokens with the system prompt, but the context holds {ctx} "
            f"tokens and {ctx - limit} are kept for the answer. Shorten the message or raise the context length."
        )


class _Either(CancelToken):
    """Cancelled when either token is: the session's stop() or the caller's own token."""

    def __init__(self, a: CancelToken, b: CancelToken) -> None:
        super().__init__()
        self._a, self._b = a, b

    @property
    def cancelled(self) -> bool:
        return self._a.cancelled or self._b.cancelled

    def raise_if_cancelled(self) -> None:
        self._a.raise_if_cancelled()
        self._b.raise_if_cancelled()
