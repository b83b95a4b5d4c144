"""The ``quantpress`` command: the GUI's twin. ``quantpress`` alone opens the GUI.

Each subcommand lives in its own module ``cmd_<name>.py`` in this package and exposes
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it. Modules are
discovered, so adding a command never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from quantpress.core.errors import Cancelled, QuantpressError


def _version() -> str:
    import quantpress

    return str(getattr(quantpress, "__version__", "unknown"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantpress",
        description="Estimate, quantize (GGUF k-quants, AWQ), evaluate and chat with local LLMs. "
        "Run without arguments to open the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"quantpress {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("cmd_"):
            modules.append(importlib.import_module(f"{__name__}.{info.name}"))
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_list:
        args_list = ["gui"]
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except QuantpressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
