"""The ``quantpress`` command: core's subcommands plus ``gui``, the default. It lives in app/, the one
layer that may import both (core never imports app)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from quantpress.app import cmd_gui
    from quantpress.core.cli import main as cli_main

    return cli_main(argv, extra_commands=(cmd_gui,), default_command="gui")


if __name__ == "__main__":
    import sys

    sys.exit(main())
