"""Small image runs for the tests: a model trained through the CLI on the digits at 16x16."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from xaicore.cli import cli


def train_digits(tmp_path_factory, model: str = "image-cnn", *args: str, epochs: int = 4,
                 scale: int = 2) -> Path:
    """A run of ``model`` trained for ``epochs`` on the digits upsampled ``scale`` times
    (16x16 at 2), with ``args`` added to ``xai train`` (``--param channels=8`` when none)."""
    run = tmp_path_factory.mktemp(model) / "run"
    params = args or ("--param", "channels=8")
    result = CliRunner().invoke(cli, ["train", "--dataset", "digits", "--model", model, "--out",
                                      str(run), "--epochs", str(epochs), "--data", f"scale={scale}",
                                      "--quiet", *params])
    assert result.exit_code == 0, result.output
    return run
