"""The PySide6 desktop GUI. Presents and orchestrates; all domain logic lives in quantpress.core.

Public API
- ``main.run_gui(model: str | None) -> int``: QApplication, theme, excepthook, the main window
  (``model``: a folder, GGUF, Hub repo id or 'demo' to open at once). ``main.make_app()`` for tests.
- ``tasks.Runner(name)``: a one-thread QThreadPool; ``submit(name, fn, *, streaming=False,
  background=False) -> Task`` calls ``fn(report=, cancel=[, stream=])`` on it; ``shutdown()`` cancels
  and waits. ``tasks.Task`` (GUI thread) signals: started, progress(Progress), streamed(str),
  succeeded(object), failed(exception), cancelled(), finished() (always last, exactly once).
- ``errors.show_error(parent, exc, *, title="", details="")``: the one error funnel (``Cancelled`` is
  never shown; tracebacks only in the details expander); ``errors.install_excepthook()``.
- ``isolated.run_isolated(target, *args, report=, cancel=)``: a core job in a spawned child process
  (conversions, evaluations); ``isolated.run_in_helper(target, *args)``: short jobs (estimate, plan)
  in one warm helper process. ``chat_process.ChatProcess.start(path, settings)``: a chat session whose
  model lives in its own child process (a native crash there ends that process, not the window).
- ``main_window.MainWindow``: sidebar flow Model -> Fit -> Convert -> Evaluate -> Chat, status bar,
  ``shutdown()``; panes in ``panes/``, QPainter charts in ``widgets/charts.py``, a label and a combo box
  that elide long file names (whole in the tooltip) in ``widgets/elide.py``.
"""
