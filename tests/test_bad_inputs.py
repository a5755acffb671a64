"""Issue 21 (round 2), item 9: one representative bad input of each class, fed through the real `zoo` entry point
(`zoo.cli.main`): each ends in one line on stderr, exit 2, no traceback, and nothing is lost or half-written."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from zoo.cli import main


@pytest.fixture
def zoo(shared_data, monkeypatch, capsys):
    """`zoo ARGS...` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def _snapshot(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.lock"}


QUIET = ["train.progress=false", "train.sample_every=0"]


def test_yaml_an_alias_bomb_recipe(zoo, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
                    "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                            for i in range(8)))
    code, _, err = zoo("train", str(bomb), "--out", str(tmp_path / "run"))
    _one_line(code, err, "error: ", "bomb.yaml")
    assert not (tmp_path / "run").exists()


def test_cli_range_a_batch_size_of_zero(zoo):
    code, out, err = zoo("sample", "runs/none", "--batch-size", "0")
    _one_line(code, err, "zoo sample: error: argument --batch-size: got 0, expected an integer >= 1")
    assert out == ""


def test_image_a_decompression_bomb_in_an_image_folder(zoo, tmp_path, monkeypatch):
    folder = tmp_path / "images" / "train" / "all"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "big.png")
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "100")  # 784 pixels stand for a bomb
    code, _, err = zoo("train", "recipes/tiny_vae.yaml", "--out", str(tmp_path / "run"), "data.name=image_folder",
                       f"data.options={{path: {tmp_path / 'images'}, channels: 1}}", *QUIET)
    _one_line(code, err, str(folder / "big.png"), "784 pixels", "ZOO_MAX_IMAGE_PIXELS=<pixels>")
    assert not (tmp_path / "run").exists()


def test_run_folder_a_damaged_trainer_state_is_refused_and_the_folder_left_as_it_was(zoo, tmp_path):
    run = tmp_path / "run"
    assert zoo("train", "recipes/tiny_vae.yaml", "--out", str(run), "train.max_steps=2", *QUIET)[0] == 0
    (run / "checkpoints" / "step_00000002" / "trainer_state.pt").write_bytes(b"not a torch file")
    before = _snapshot(run)
    code, _, err = zoo("train", "recipes/tiny_vae.yaml", "--out", str(run), "--resume", "auto",
                       "train.max_steps=4", *QUIET)
    _one_line(code, err, "error: cannot read trainer state", "trainer_state.pt")
    assert _snapshot(run) == before  # nothing moved, rewritten or appended


def test_registry_value_an_unknown_metric_name(zoo, tmp_path):
    code, out, err = zoo("evaluate", "data:mnist:test", "--metric", "fdi", "--no-registry")
    _one_line(code, err, "error: --metric: ", "'fdi'")
    assert out == ""
