"""Calibration text: the shipped default, user files (.txt / .jsonl), tokenizing and chunking.

The chunking follows llama.cpp's imatrix tool: the whole text is tokenized once, cut into chunks of
``n_ctx`` tokens, and the first token of each chunk is replaced by BOS when the tokenizer adds one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput, InvalidModel

DEFAULT_NAME = "default"
_DEFAULT_RESOURCE = ("calibration", "default.txt")


def default_calibration_text() -> str:
    """The shipped licence-clean mix of prose, dialogue, documentation and code (~33k tokens);
    origin and licences in resources/calibration/README.md."""
    path = resources.files("quantpress.resources").joinpath(*_DEFAULT_RESOURCE)
    return path.read_text(encoding="utf-8")


def load_calibration_text(source: str | Path) -> str:
    """Text from ``source``: "default", a .txt file, or a .jsonl file whose lines are objects with
    a "text" field (documents are joined with blank lines)."""
    if str(source) == DEFAULT_NAME:
        return default_calibration_text()
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidInput(f"calibration file '{path}' does not exist; give a .txt or .jsonl file, or 'default'")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"calibration file '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if path.suffix.lower() == ".jsonl":
        return _jsonl_text(path, raw)
    if path.suffix.lower() == ".json":
        raise InvalidInput(f"calibration file '{path}': use JSON Lines (.jsonl), one {{\"text\": ...}} per line")
    return raw


def _jsonl_text(path: Path, raw: str) -> str:
    docs: list[str] = []
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"calibration file '{path}', line {line_no}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise InvalidInput(
                f"calibration file '{path}', line {line_no}: expected an object with a \"text\" string field")
        docs.append(row["text"])
    return "\n\n".join(docs)


def text_label(text: str, source: str | Path | None) -> str:
    """A short name for the dataset, stored in imatrix files and sidecars."""
    if source is None or str(source) == DEFAULT_NAME:
        return "quantpress-default-calibration"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{Path(source).name}#{digest}"


@dataclass(frozen=True)
class Chunks:
    """Token-id rows of equal length ``n_ctx`` (a list of lists, so no torch is needed here)."""

    rows: tuple[tuple[int, ...], ...]
    n_ctx: int
    n_text_tokens: int  # tokens the whole text had before cutting

    @property
    def n_tokens(self) -> int:
        return len(self.rows) * self.n_ctx


# Above any text quantpress tokenizes; transformers warns only past a tokenizer's model_max_length.
UNLIMITED_TOKENS = 1 << 40


def load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer (transformers AutoTokenizer, local files only, never the folder's own
    code). Long texts are tokenized whole and cut into rows here, so the model's length limit, whose
    only effect would be a "Token indices sequence length is longer than ..." message on every run
    (read by users as an error), is lifted."""
    from quantpress.core.validate import refuse_custom_code
    from transformers import AutoTokenizer

    refuse_custom_code(Path(model_dir))  # before transformers would ask to run the folder's tokenizer code
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False,
                                             model_max_length=UNLIMITED_TOKENS)
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"{model_dir}: cannot load the tokenizer ({exc}); the folder needs tokenizer.json "
                           f"or tokenizer.model with tokenizer_config.json") from exc


def _adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def chunk_text(tokenizer: Any, text: str, *, n_ctx: int, max_tokens: int | None = None,
               min_chunks: int = 1) -> Chunks:
    """Tokenize ``text`` and cut it into rows of ``n_ctx`` tokens (at most ``max_tokens`` in all);
    the first token of each row becomes BOS when the tokenizer adds BOS. Raises InvalidInput when
    the text does not fill ``min_chunks`` rows."""
    if n_ctx < 8:
        raise InvalidInput(f"context size {n_ctx} is too small for calibration; use at least 8 tokens")
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    n_rows = len(ids) // n_ctx
    if max_tokens is not None:
        n_rows = min(n_rows, max(1, max_tokens // n_ctx))
    if n_rows < min_chunks:
        raise InvalidInput(
            f"the calibration text has {len(ids)} tokens, too little for {min_chunks} chunk(s) of {n_ctx} "
            f"tokens; give a longer text (at least {min_chunks * n_ctx} tokens) or a smaller context size")
    bos = tokenizer.bos_token_id if _adds_bos(tokenizer) else None
    rows = []
    for r in range(n_rows):
        row = list(ids[r * n_ctx:(r + 1) * n_ctx])
        if bos is not None:
            row[0] = bos
        rows.append(tuple(row))
    return Chunks(tuple(rows), n_ctx, len(ids))
