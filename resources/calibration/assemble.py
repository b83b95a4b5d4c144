"""Rebuild ``default.txt`` (the default calibration text) from its parts; see README.md.

Run with the CPython 3.11 whose standard library supplies the PSF-licensed parts:
    python resources/calibration/assemble.py
The output is deterministic for a given CPython version; the shipped file was made with 3.11.7.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Python Language Reference sections (pydoc_data.topics, the docs' own text), technical prose.
DOC_TOPICS = ("execmodel", "naming", "import", "try", "with", "class", "function", "comparisons", "truth")
# Whole standard-library modules (code with docstrings and comments).
STDLIB_FILES = ("textwrap.py", "shlex.py", "graphlib.py", "colorsys.py", "bisect.py")
SEPARATOR = "\n\n---\n\n"


def _original_sections() -> list[str]:
    text = (HERE / "parts" / "original.txt").read_text(encoding="utf-8")
    return [s.strip() for s in text.split("\n---\n")]


def _doc_sections() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[name].strip() for name in DOC_TOPICS]


def _code_sections() -> list[str]:
    files = [(STDLIB / name).read_text(encoding="utf-8").strip() for name in STDLIB_FILES]
    own = (HERE / "parts" / "original_code.txt").read_text(encoding="utf-8").strip()
    return [*files, own]


def assemble() -> str:
    """Interleave prose/dialogue, documentation and code so that any prefix of the text (the
    calibration may use only the first N tokens) is already a mix of all three."""
    streams = [_original_sections(), _doc_sections(), _code_sections()]
    parts: list[str] = []
    while any(streams):
        for stream in streams:
            if stream:
                parts.append(stream.pop(0))
    return SEPARATOR.join(parts) + "\n"


if __name__ == "__main__":
    out = HERE / "default.txt"
    out.write_text(assemble(), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
