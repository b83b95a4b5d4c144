"""Evaluation texts: the held-out text shipped in resources/eval/ (see its README for origin and
licence; it is distinct from the calibration text) or a user's file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from quantpress.core.errors import InvalidInput

DEFAULT_TEXT_NAME = "built-in held-out text"


@dataclass(frozen=True)
class EvalText:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def default_eval_text() -> EvalText:
    from importlib.resources import files

    text = files("quantpress.resources").joinpath("eval", "heldout.txt").read_text(encoding="utf-8")
    return EvalText(DEFAULT_TEXT_NAME, text)


def eval_text(text: str, name: str = "text") -> EvalText:
    if not text.strip():
        raise InvalidInput(f"The evaluation text ({name}) is empty.")
    return EvalText(name, text)


def read_eval_text(path: str | Path) -> EvalText:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the evaluation text ({exc.strerror or exc}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name}: the evaluation text must be UTF-8 plain text.") from None
    return eval_text(text, path.name)
