"""A checkpoint or training state is data, never code: a pickle that would run something is refused
unread, with one line, whichever command or library call reads it."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from sparsekit.errors import ModelSourceError, UnsafeCheckpointError
from tests.cli.test_cli import one_line_error


class _CreatesFile:
    """Unpickling this calls ``os.system("touch MARKER")``: the classic ``__reduce__`` payload."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payload(marker, where: str) -> dict:
    ok = {"format": "sparsekit.checkpoint", "schema": 1, "source": {"spec": "mlp", "args": {}}, "inputs": [], "meta": {}, "modelopt_state": {}, "state_dict": {"w": torch.zeros(2)}}
    if where == "meta":
        ok["meta"] = {"note": _CreatesFile(marker)}
    elif where == "weights":
        ok["state_dict"]["w"] = _CreatesFile(marker)
    else:
        return _CreatesFile(marker)
    return ok


def _write(path, marker, where: str, how: str) -> None:
    if how == "torch.save":
        torch.save(_payload(marker, where), path)
    elif how == "legacy torch.save":
        torch.save(_payload(marker, where), path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(_payload(marker, where), f)


def test_the_payload_is_real(tmp_path):
    """The file would create the marker if it were read with full unpickling (what the kit did)."""
    evil, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    _write(evil, marker, "meta", "torch.save")
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "legacy torch.save", "pickle.dump"])
@pytest.mark.parametrize("where", ["meta", "weights", "top"])
def test_read_checkpoint_refuses_and_runs_nothing(tmp_path, how, where):
    from sparsekit.models.checkpoint import read_checkpoint

    evil, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    _write(evil, marker, where, how)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(evil)
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and "evil.pt" in message and "never run" in message
    if how != "pickle.dump":  # torch's own formats: the global is named without running anything
        assert "system" in message


def test_training_state_refuses_and_runs_nothing(tmp_path):
    from sparsekit.recover.finetune import TrainingState

    evil, marker = tmp_path / "ft.pt.state.pt", tmp_path / "PWNED"
    torch.save({"fingerprint": "abc", "step": 1, "model": {}, "optimizer": _CreatesFile(marker), "epoch_loss": [], "running": []}, evil)
    with pytest.raises(UnsafeCheckpointError, match="training state"):
        TrainingState(evil, "abc").load()
    assert not marker.exists()


def test_damaged_payloads_are_one_clear_error(tmp_path):
    from sparsekit.models.checkpoint import read_checkpoint

    base = {"format": "sparsekit.checkpoint", "schema": 1, "source": {"spec": "mlp"}, "inputs": [], "meta": {}, "modelopt_state": {}, "state_dict": {"w": torch.zeros(2)}}
    cases = {"state_dict": None, "source": "mlp", "modelopt_state": [1, 2]}
    for key, value in cases.items():
        bad = dict(base)
        if value is None:
            bad.pop(key)
        else:
            bad[key] = value
        torch.save(bad, tmp_path / f"{key}.pt")
        with pytest.raises(ModelSourceError, match=f"damaged: its '{key}' part"):
            read_checkpoint(tmp_path / f"{key}.pt")
    torch.save({**base, "state_dict": {"w": [1.0, 2.0]}}, tmp_path / "weights.pt")
    with pytest.raises(ModelSourceError, match="not a tensor"):
        read_checkpoint(tmp_path / "weights.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelSourceError, match="is empty"):
        read_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("command", [["check", "{evil}"], ["export", "{evil}", "-o", "{tmp}/out.onnx"]])
def test_cli_refuses_with_one_line_and_runs_nothing(cli, tmp_path, command):
    evil, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    _write(evil, marker, "meta", "torch.save")
    args = [a.replace("{evil}", str(evil)).replace("{tmp}", str(tmp_path)) for a in command]
    line = one_line_error(cli(*args), code=2, match="refused checkpoint")
    assert "posix.system" in line or "os.system" in line
    assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()
