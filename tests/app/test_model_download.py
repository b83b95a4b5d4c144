"""The Model pane's Hub download, through the real window against the local fake Hub (tests/hub_server.py):
open a repo id, see the download size, click Download, the downloaded folder becomes the current model;
a gated repo asks for a token (password field), logs in and retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import TOKEN, FakeHub, configure_client, hub_url, serving
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QInputDialog, QLineEdit
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    llama = tiny_model("llama", tmp_path_factory.mktemp("repos"))
    yield from serving({"tiny/llama": llama, "tiny/gated": llama}, gated={"tiny/gated"})


@pytest.fixture
def client(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    configure_client(monkeypatch, hub_url(hub), tmp_path)
    return tmp_path


def _open_hub(qtbot, window, repo: str) -> None:  # type: ignore[no-untyped-def]
    pane = window.model_pane
    pane.hub_edit.setText(repo)
    with qtbot.waitSignal(window.state.model_changed, timeout=60000):
        pane.open_hub()
    assert window.state.model.kind.value == "hub"


def _download(qtbot, window, client: Path) -> None:  # type: ignore[no-untyped-def]
    pane = window.model_pane
    qtbot.waitUntil(pane.download_button.isEnabled, timeout=60000)
    assert pane.download_button.isVisible() and " MB" in pane.download_button.text()
    assert "MB" in pane.download_label.text()
    seen: list[float] = []
    with qtbot.waitSignal(window.state.model_changed, timeout=120000):
        qtbot.mouseClick(pane.download_button, Qt.MouseButton.LeftButton)
        assert pane.cancel_button.isVisible()  # the progress row with its cancel button
        pane._task.progress.connect(lambda p: seen.append(p.fraction))
    model = window.state.model
    assert model.kind.value == "hf_folder" and Path(model.local_path).is_relative_to(client / "hf" / "hub")
    assert model.convertible and not pane.download_button.isVisible()
    assert seen and seen == sorted(seen) and seen[-1] == 1.0  # byte progress from the child, ending full
    assert (Path(model.local_path) / "model.safetensors").is_file()


def test_open_hub_repo_then_download_opens_the_folder(qtbot, window, client: Path) -> None:  # type: ignore[no-untyped-def]
    _open_hub(qtbot, window, "tiny/llama")
    _download(qtbot, window, client)
    assert window.model_pane.card_title.text() == "llama"  # named after the repo, not the commit folder


def test_gated_repo_asks_for_a_token_and_retries(qtbot, window, client: Path) -> None:  # type: ignore[no-untyped-def]
    pane = window.model_pane
    pane.hub_edit.setText("tiny/gated")
    pane.open_hub()  # config.json is gated: the open fails with GatedRepo and the token prompt opens

    def prompts() -> list[QInputDialog]:
        return [w for w in QApplication.topLevelWidgets() + pane.findChildren(QInputDialog)
                if isinstance(w, QInputDialog) and w.objectName() == "tokenDialog" and w.isVisible()]

    qtbot.waitUntil(lambda: bool(prompts()), timeout=60000)
    dialog = prompts()[0]
    assert dialog.textEchoMode() == QLineEdit.EchoMode.Password and "token" in dialog.labelText()
    dialog.setTextValue(TOKEN)
    with qtbot.waitSignal(window.state.model_changed, timeout=60000):
        dialog.accept()
    assert window.state.model.kind.value == "hub"
    assert (client / "hf" / "token").read_text().strip() == TOKEN  # huggingface_hub's store, not our settings
    _download(qtbot, window, client)
