"""Whether Qt's X11 platform plugin can load here, and if not, which system packages it lacks.

PySide6's wheel carries Qt but not the X11 helper libraries its ``xcb`` plugin links against. On a bare
Linux desktop Qt then stops with "Could not load the Qt platform plugin xcb" and a list of plugin names
that does not say what to install (issue 18). ``quantpress gui`` and ``quantpress doctor`` check first
and name the missing libraries and the Debian/Ubuntu packages that hold them.

No Qt is imported: the plugin's file is found from PySide6's install location, its dependencies are
listed by the system's dynamic loader (``ldd``), and ``libxcb-cursor``, which Qt opens at run time
rather than links, is looked up with ctypes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

# Shared library -> the Debian/Ubuntu package with it (Qt's "Qt for X11 Requirements" page lists them).
APT_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-sync.so.1": "libxcb-sync1", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-util.so.1": "libxcb-util1", "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6", "libfontconfig.so.1": "libfontconfig1", "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0", "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# Opened by Qt (6.5+) when the plugin starts, so not in the plugin's own dependency list.
LOADED_AT_RUN_TIME = ("libxcb-cursor.so.0",)


def xcb_plugin() -> Path | None:
    """PySide6's ``libqxcb.so``, if PySide6 is installed and has one (not imported: only located)."""
    spec = find_spec("PySide6")
    for root in (spec.submodule_search_locations or []) if spec else []:
        plugin = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.exists():
            return plugin
    return None


def parse_ldd(text: str) -> list[str]:
    """The libraries ``ldd`` reports as "not found", each once, in its order."""
    missing: list[str] = []
    for line in text.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def missing_xcb_libraries(plugin: Path | None = None) -> list[str]:
    """The system libraries the X11 plugin needs and cannot find; [] when it can load, or where the
    question does not apply (not Linux, no PySide6, no ``ldd``)."""
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd")
    if not sys.platform.startswith("linux") or plugin is None or ldd is None:
        return []
    done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30, check=False)
    missing = parse_ldd(done.stdout)
    return missing + [n for n in LOADED_AT_RUN_TIME if n not in missing and not _loadable(n)]


def uses_xcb(environ: dict[str, str] | None = None) -> bool:
    """Whether Qt will pick its X11 plugin: asked for by QT_QPA_PLATFORM, or left to Qt on a desktop
    that is not a Wayland session (there Qt 6 uses its Wayland plugin, which needs none of these)."""
    env = os.environ if environ is None else environ
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].strip().startswith("xcb")  # Qt tries the first one named
    return sys.platform.startswith("linux") and not env.get("WAYLAND_DISPLAY")


def xcb_problem(missing: list[str]) -> str:
    """What to tell the user about ``missing`` ("" when nothing is missing)."""
    if not missing:
        return ""
    packages = sorted({APT_PACKAGES.get(n, n) for n in missing})
    return (f"The desktop app cannot start: Qt's X11 plugin needs {', '.join(missing)}, which this system "
            f"lacks. On Debian/Ubuntu: sudo apt-get install {' '.join(packages)} "
            "(other distributions: the packages holding those files). The command-line jobs "
            "(quantpress convert, estimate, eval, chat, ...) need none of them.")
