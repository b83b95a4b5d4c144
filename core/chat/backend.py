"""The one interface a chat runtime implements, and the table that picks a runtime for a model.

``ChatSession`` only talks to a ``ChatBackend``: llama.cpp for GGUF files, torch's int4 kernels for
AWQ folders; another runtime is one more row of ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from quantpress.core.chat.types import ChatSettings, MemoryUse, Message, Reply, TokenCallback
from quantpress.core.errors import InvalidModel
from quantpress.core.jobs import NEVER, CancelToken


@runtime_checkable
class ChatBackend(Protocol):
    """A loaded model that can continue a conversation.

    ``encode_chat`` applies the model's chat template (or the plain fallback, see
    ``uses_fallback_template``) and returns prompt token ids ending with the assistant's turn opener.
    ``generate`` samples at most ``max_new_tokens`` tokens, calls ``on_token`` once per token, and
    checks ``cancel`` before each token, so a stop request takes effect within one token.
    """

    path: Path
    ctx_tokens: int

    @property
    def uses_fallback_template(self) -> bool: ...

    def encode_chat(self, messages: Sequence[Message]) -> list[int]: ...

    def generate(self, prompt_tokens: Sequence[int], settings: ChatSettings, max_new_tokens: int,
                 on_token: TokenCallback | None = None, cancel: CancelToken = NEVER) -> Reply: ...

    def memory(self) -> MemoryUse: ...

    def close(self) -> None: ...


BackendLoader = Callable[[Path, ChatSettings], ChatBackend]


@dataclass(frozen=True)
class BackendEntry:
    name: str
    accepts: Callable[[Path], bool]
    load: BackendLoader


def _load_llama(path: Path, settings: ChatSettings) -> ChatBackend:
    from quantpress.core.chat.llama_backend import LlamaCppBackend

    return LlamaCppBackend(path, settings)


def _is_gguf(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".gguf"


def _is_awq_folder(path: Path) -> bool:
    from quantpress.core.awq.backend import awq_format

    return path.is_dir() and awq_format(path) is not None


def _load_awq(path: Path, settings: ChatSettings) -> ChatBackend:
    from quantpress.core.awq.backend import AwqBackend

    return AwqBackend(path, settings)


# Built-in runtimes, imported only when used: GGUF files through llama.cpp, AWQ folders
# (compressed-tensors or AutoAWQ) through torch's int4 kernels.
BACKENDS: list[BackendEntry] = [
    BackendEntry("llama.cpp", _is_gguf, _load_llama),
    BackendEntry("awq (torch int4)", _is_awq_folder, _load_awq),
]


def load_backend(path: str | Path, settings: ChatSettings) -> ChatBackend:
    path = Path(path)
    if not path.exists():
        raise InvalidModel(f"{path}: no such file or folder")
    for entry in BACKENDS:
        if entry.accepts(path):
            return entry.load(path, settings)
    names = ", ".join(e.name for e in BACKENDS)
    raise InvalidModel(f"{path.name}: no chat runtime can open this (available: {names}; GGUF files end in .gguf)")
