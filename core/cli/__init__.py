"""The ``quantpress`` command's headless part: the GUI's twin. The installed ``quantpress`` is
``quantpress.app.entry:main``, which adds the ``gui`` subcommand (the default) to these.

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
from types import ModuleType

from quantpress.core.cli.output import end_progress_line
from quantpress.core.errors import Cancelled, QuantpressError
from quantpress.core.signals import Terminated, terminate_gracefully


def _version() -> str:
    import quantpress

    return str(getattr(quantpress, "__version__", "unknown"))


def build_parser(extra_commands: Sequence[ModuleType] = ()) -> argparse.ArgumentParser:
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
    for module in sorted([*modules, *extra_commands], key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, extra_commands: Sequence[ModuleType] = (),
         default_command: str | None = None) -> int:
    """Run one subcommand; ``extra_commands`` are more ``cmd_`` modules (the app's ``gui``), and
    ``default_command`` what no arguments mean (else the help)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(extra_commands)
    if not args_list and default_command:
        args_list = [default_command]
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM/SIGHUP unwind through every job's cleanup, like Ctrl-C (the GUI runs jobs in children
    # that do the same: app/isolated.py).
    restore_signals = terminate_gracefully() if not getattr(args, "own_signals", False) else (lambda: None)
    try:
        return int(args.func(args) or 0)
    except Terminated as exc:
        end_progress_line()
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except Cancelled:
        end_progress_line()
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        end_progress_line()
        print("interrupted", file=sys.stderr)
        return 130
    except QuantpressError as exc:
        end_progress_line()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        restore_signals()  # main() called in-process (tests, the GUI's helpers) leaves them as found


if __name__ == "__main__":
    sys.exit(main())
