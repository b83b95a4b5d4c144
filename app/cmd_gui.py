"""``quantpress gui [MODEL]``: open the desktop app (also what ``quantpress`` alone does)."""

from __future__ import annotations

import argparse

ORDER = 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gui", help="open the desktop app (default when no command is given)")
    p.add_argument("model", nargs="?", help="a model to open: HF folder, GGUF file, Hub repo id or 'demo'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that every other command works without Qt installed.
    from quantpress.app.main import run_gui

    return run_gui(args.model)
