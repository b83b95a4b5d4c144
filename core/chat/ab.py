"""A/B: the same prompt to two models (e.g. F16 and Q4_K_M), answers and speed side by side.

Models are loaded one after the other (never both at once), so A/B works where only one fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quantpress.core.chat.session import ChatSession
from quantpress.core.chat.types import ChatSettings, MemoryUse, Reply
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore


@dataclass(frozen=True)
class ABAnswer:
    model: Path
    reply: Reply
    memory: MemoryUse
    uses_fallback_template: bool

    @property
    def tokens_per_second(self) -> float | None:
        return self.reply.stats.generation_tokens_per_second


@dataclass(frozen=True)
class ABResult:
    prompt: str
    answers: tuple[ABAnswer, ...]


def compare(
    models: Sequence[str | Path],
    prompt: str,
    settings: ChatSettings | None = None,
    *,
    report: Report = ignore,
    cancel: CancelToken = NEVER,
) -> ABResult:
    """Ask every model the same question with the same settings (set a seed or temperature 0 to
    make the comparison about the weights, not the sampling)."""
    settings = settings or ChatSettings()
    answers = []
    for i, model in enumerate(models):
        cancel.raise_if_cancelled()
        report(Progress("ab", i / len(models), f"asking {Path(model).name}", i, len(models)))
        session = ChatSession.load(model, settings)
        try:
            reply = session.send(prompt, cancel=cancel)
            answers.append(ABAnswer(Path(model), reply, session.memory(), session.uses_fallback_template))
        finally:
            session.close()
    cancel.raise_if_cancelled()
    report(Progress("ab", 1.0, "done", len(models), len(models)))
    return ABResult(prompt, tuple(answers))
