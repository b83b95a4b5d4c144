"""The desktop app's chat backend in a child process: a crash in native code (llama.cpp on CUDA, the
int4 torch kernels) ends that process, not the window.

    session = ChatProcess.start(path, settings)      # spawns the child, loads the model there
    reply = session.send("Hi", on_token=stream, cancel=token)   # tokens stream over the pipe
    session.stop()                                    # thread-safe, like ChatSession.stop
    session.close()

A :class:`ChatProcess` stands in for a ``core.chat.ChatSession`` (send, stop, rewind, clear,
configure, memory, uses_fallback_template, image_problem, close), so the chat pane drives both the same way. Its
blocking methods are called on the GUI's chat runner thread; only ``stop()`` is called from the GUI
thread.

Protocol over a duplex multiprocessing pipe, one request at a time: the parent sends
``(method, args)``; the child answers ``("token", text)`` any number of times (send only), then
exactly one ``("ok", value)`` or ``("error", exc_or_None, type_name, message, traceback)``. Stop is a
multiprocessing Event read by the child's cancel token, because the child does not read the pipe
while it generates. When the child dies (a signal, out of memory) the call raises
:class:`ChatProcessDied` and this object stays dead: the user loads the model again.

No Qt here: the child imports this module, not the GUI.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantpress.app.isolated import ChildProcessDied, _EventToken, error_message, raise_error
from quantpress.core.errors import Cancelled
from quantpress.core.jobs import NEVER, CancelToken

POLL_S = 0.05
CLOSE_WAIT_S = 10.0


class ChatProcessDied(ChildProcessDied):
    """The chat's model process ended while (or before) it was asked something."""


def _why(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return {"SIGSEGV": "it crashed in native code (segmentation fault, SIGSEGV)",
                "SIGKILL": "it was killed (SIGKILL), most likely because the computer ran out of memory",
                "SIGABRT": "it aborted in native code (SIGABRT)"}.get(name, f"it was ended by {name}")
    return f"it exited with code {exitcode}"


# -- the child ---------------------------------------------------------------------------------------


def _configured(session: Any, chat_settings: Any) -> Any:
    """Apply new settings, then answer the memory use they give."""
    session.configure(chat_settings)
    return session.memory()


def _serve(conn: Any, stop_event: Any, path: str, settings: Any, parent_pid: int) -> None:
    """The child's main loop: load the model, then answer requests until "close" or EOF."""
    from quantpress.core.chat import ChatSession
    from quantpress.core.signals import exit_with_parent

    # A killed or crashed GUI must not leave the model loaded here. No parent-death signal: the runner
    # thread that started this process may end (idle) while the chat goes on.
    exit_with_parent(parent_pid)

    def answer(kind: str, *payload: Any) -> None:
        conn.send((kind, *payload))

    def error(exc: BaseException) -> None:
        conn.send(error_message(exc))

    try:
        session = ChatSession.load(Path(path), settings)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        error(exc)
        return
    answer("ok", (session.memory(), session.uses_fallback_template, session.image_problem))
    token = _EventToken(stop_event)

    def on_token(piece: str) -> None:
        answer("token", piece)

    handlers: dict[str, Callable[..., Any]] = {
        "send": lambda text, rewind, images=(): (session.rewind() if rewind else None,
                                                 session.send(text, on_token=on_token, cancel=token,
                                                              images=images))[1],
        "rewind": session.rewind,
        "clear": session.clear,
        "configure": lambda s: _configured(session, s),
        "memory": session.memory,
    }
    try:
        while True:
            try:
                method, args = conn.recv()
            except EOFError:
                return
            if method == "close":
                answer("ok", None)
                return
            try:
                answer("ok", handlers[method](*args))
            except BaseException as exc:  # noqa: BLE001
                error(exc)
    finally:
        session.close()


# -- the parent --------------------------------------------------------------------------------------


class ChatProcess:
    """A chat session whose model lives in a spawned child process (see the module docstring)."""

    def __init__(self, path: Path, settings: Any, conn: Any, proc: Any, stop_event: Any) -> None:
        self.path = Path(path)
        self.settings = settings
        self._conn = conn
        self._proc = proc
        self._stop = stop_event
        self._dead: str | None = None
        self.uses_fallback_template = False
        self.image_problem = ""  # why images cannot be attached ("" when they can), as the child's session says
        self._memory: Any = None

    @classmethod
    def start(cls, path: str | Path, settings: Any, *, cancel: CancelToken = NEVER) -> ChatProcess:
        """Spawn the child and load ``path`` there; raises what loading raised (ModelLoadError, ...)."""
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads
        parent, child = ctx.Pipe(duplex=True)
        stop_event = ctx.Event()
        proc = ctx.Process(target=_serve, args=(child, stop_event, str(path), settings, os.getpid()), daemon=True,
                           name=f"quantpress-chat-{Path(path).name}")
        proc.start()
        child.close()  # the parent keeps only its end: EOF on recv once the child is gone
        self = cls(Path(path), settings, parent, proc, stop_event)
        try:
            self._memory, self.uses_fallback_template, self.image_problem = self._answer(cancel=cancel, loading=True)
        except BaseException:
            self._kill()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._dead is None and self._proc.is_alive()

    # -- the ChatSession surface the pane uses ----------------------------------------------------
    def send(self, text: str, on_token: Callable[[str], None] | None = None, cancel: CancelToken = NEVER,
             *, rewind: bool = False, images: tuple[str, ...] = ()) -> Any:
        self._stop.clear()
        return self._call("send", text, rewind, tuple(str(p) for p in images), on_token=on_token, cancel=cancel)

    def stop(self) -> None:
        """Stop the reply being generated (thread-safe): the child ends it before the next token."""
        self._stop.set()

    def rewind(self) -> Any:
        return self._call("rewind")

    def clear(self) -> None:
        self._call("clear")

    def configure(self, settings: Any) -> Any:
        self._memory = self._call("configure", settings)
        self.settings = settings
        return self._memory

    def memory(self) -> Any:
        return self._memory

    def close(self) -> None:
        """Ask the child to free the model and exit; kill it if it does not."""
        if self._dead is None and self._proc.is_alive():
            try:
                self._conn.send(("close", ()))
            except (OSError, ValueError):
                pass
            self._proc.join(CLOSE_WAIT_S)
        self._kill()
        self._dead = self._dead or "closed"

    # -- internals --------------------------------------------------------------------------------
    def _call(self, method: str, *args: Any, on_token: Callable[[str], None] | None = None,
              cancel: CancelToken = NEVER) -> Any:
        if self._dead is not None:
            raise ChatProcessDied(f"The chat model's process is no longer running ({self._dead}). "
                                  "Load the model again to continue.")
        try:
            self._conn.send((method, args))
        except (OSError, ValueError):
            self._died()
        return self._answer(on_token=on_token, cancel=cancel)

    def _answer(self, *, on_token: Callable[[str], None] | None = None, cancel: CancelToken = NEVER,
                loading: bool = False) -> Any:
        """The answer to the request just sent; ``loading``: a cancel (the window closing) ends the
        child at once instead of waiting for a large model to finish loading."""
        while True:
            if cancel.cancelled and loading:
                raise Cancelled()  # start() kills the child
            if cancel.cancelled and not self._stop.is_set():
                self._stop.set()
            try:
                ready = self._conn.poll(POLL_S)
                message = self._conn.recv() if ready else None
            except (EOFError, OSError):
                self._died()
            if message is None:
                if not self._proc.is_alive() and not self._conn.poll(0):
                    self._died()
                continue
            kind = message[0]
            if kind == "token":
                if on_token is not None:
                    on_token(message[1])
            elif kind == "ok":
                return message[1]
            else:
                raise_error(message)

    def _died(self) -> Any:
        self._proc.join(5)
        why = _why(self._proc.exitcode)
        self._dead = why
        self._kill()
        raise ChatProcessDied(
            f"The chat stopped: the process running {self.path.name} ended without an answer; {why}. "
            "The window is fine. Load the model again to start a new chat (a smaller context or "
            "fewer GPU layers may help if it happens again).")

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(5)
        self._conn.close()
