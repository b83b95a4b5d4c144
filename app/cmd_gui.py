"""``quantpress gui [MODEL]``: open the desktop app (also what ``quantpress`` alone does)."""

from __future__ import annotations

import argparse

ORDER = 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (default when no command is given)")
    p.add_argument("model", nargs="?", help="a model to open: HF folder, GGUF file, Hub repo id or 'demo'")
    # The GUI's job children end on SIGTERM/SIGHUP themselves (app/isolated.py); the window must not.
    p.set_defaults(func=run, own_signals=True)


def run(args: argparse.Namespace) -> int:
    from quantpress.app.main import run_gui  # Qt only when the GUI is asked for

    return run_gui(args.model)
