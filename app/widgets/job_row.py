"""One row of the conversion queue: title, state, progress, current tensor, ETA, cancel, log, open folder."""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from quantpress.app.icons import icon
from quantpress.app.jobqueue import Job, JobState
from quantpress.app.theme import colors

STATE_COLOR = {"queued": "neutral", "running": "accent", "done": "good", "failed": "bad", "cancelled": "neutral"}


class JobRow(QFrame):
    """Signals:
    cancel_requested(object): the user pressed Cancel on this job (the Job).
    """

    cancel_requested = Signal(object)

    def __init__(self, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.setProperty("role", "card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        top = QHBoxLayout()
        self.title = QLabel(job.title)
        self.title.setStyleSheet("font-weight: 600;")
        # Wrapped: a job of six formats would otherwise make the card wider than the queue (cut off at
        # 1024x640 behind a sideways scroll bar).
        self.title.setWordWrap(True)
        self.state_label = QLabel()
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setToolTip("Stop this job; its partial file is removed")
        self.cancel_button.clicked.connect(self._cancel)
        self.log_button = QToolButton()
        self.log_button.setIcon(icon("log"))
        self.log_button.setText("Log")
        self.log_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.log_button.setToolTip("Show or hide this job's log")
        self.log_button.setCheckable(True)
        self.log_button.toggled.connect(self._toggle_log)
        self.open_button = QPushButton(icon("folder"), "Open folder")
        self.open_button.setToolTip("Show the written files in your file manager")
        self.open_button.clicked.connect(self._open_folder)
        top.addWidget(self.title, 1)
        top.addWidget(self.state_label)
        for b in (self.open_button, self.log_button, self.cancel_button):
            top.addWidget(b)
        layout.addLayout(top)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        layout.addWidget(self.progress)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        layout.addWidget(self.detail)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumHeight(160)
        self.log_view.hide()
        layout.addWidget(self.log_view)
        self.refresh()

    def refresh(self) -> None:
        job = self.job
        c = colors()
        color = getattr(c, STATE_COLOR.get(job.state.value, "neutral"))
        cancelling = job.active and job.cancel_requested
        self.state_label.setText("Cancelling…" if cancelling else job.state.value.capitalize())
        self.state_label.setStyleSheet(f"color: {color}; font-weight: 600;")
        self.progress.setValue(int(job.fraction * 1000))
        self.progress.setVisible(job.state in (JobState.RUNNING, JobState.QUEUED))
        self.detail.setText(job.status_text())
        self.detail.setStyleSheet(f"color: {c.bad};" if job.state is JobState.FAILED else "")
        self.cancel_button.setVisible(job.active)
        self.cancel_button.setEnabled(not job.cancel_requested)
        self.open_button.setVisible(job.state is JobState.DONE and job.out_dir is not None)
        if job.state is JobState.FAILED and not self.log_button.isChecked():
            self.log_button.setChecked(True)  # a failed job shows its log straight away
        if self.log_view.isVisible():
            self._fill_log()

    def _fill_log(self) -> None:
        text = "\n".join(self.job.log)
        if self.log_view.toPlainText() != text:
            self.log_view.setPlainText(text)
            bar = self.log_view.verticalScrollBar()
            bar.setValue(bar.maximum())

    @Slot(bool)
    def _toggle_log(self, on: bool) -> None:
        self.log_view.setVisible(on)
        if on:
            self._fill_log()

    @Slot()
    def _cancel(self) -> None:
        self.cancel_requested.emit(self.job)

    @Slot()
    def _open_folder(self) -> None:
        if self.job.out_dir is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.job.out_dir)))
