"""The loaded working folder is a value: nothing changes it after loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sequencer.config import load_settings
from sequencer.usecases.sending import Senders
from sequencer.workspace import Workspace
from tests.workdir import make_workdir


def test_a_loaded_workspace_cannot_be_changed(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, smtp_port=2525)
    ws = Workspace.from_settings(load_settings(wd.config, env=wd.env))
    try:
        assert set(ws.sequences) == {"three"}
        with pytest.raises(dataclasses.FrozenInstanceError):
            ws.sequences = {}  # type: ignore[misc]
        with pytest.raises(TypeError):
            ws.sequences["other"] = ws.sequences["three"]  # type: ignore[index]
        assert set(ws.sequences) == {"three"}
    finally:
        ws.close()


def test_paused_mailboxes_are_shared_only_by_the_senders_given_the_same_set(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, smtp_port=2525)
    ws = Workspace.from_settings(load_settings(wd.config, env=wd.env))
    try:
        shared: set[str] = set()
        one, two, alone = Senders(ws, shared), Senders(ws, shared), Senders(ws)
        one.paused.add("sales")
        assert "sales" in two.paused
        assert "sales" not in alone.paused
    finally:
        ws.close()
