"""Trackers: TensorBoard gets scalars, sample / reconstruction grids and the recipe (text + hparams); Weights & Biases
(offline mode, real wandb) the same with the recipe as the run config, read back from its local run directory."""
from __future__ import annotations

import glob
import json
import struct

import pytest

from conftest import RandomImages, tiny_recipe
from zoo import Trainer, build_model

OVERRIDES = ["train.max_steps=10", "train.log_every=5", "train.sample_every=10", "train.n_samples=4",
             "train.checkpoint_every=0", "model.latent_dim=3"]


def train(tmp_path, loggers: str) -> None:
    recipe = tiny_recipe("vae", [*OVERRIDES, f"train.loggers=[{loggers}]", "train.tensorboard=true"])
    Trainer(build_model(recipe), recipe, tmp_path / "run", dataset=RandomImages(64, (1, 28, 28))).train()


def test_tensorboard_gets_scalars_grids_and_the_recipe(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    train(tmp_path, "tensorboard")
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert [e.step for e in events.Scalars("vae/loss")] == [5, 10]
    assert events.Scalars("vae/loss")[1].value == pytest.approx(json.loads(
        (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])["vae/loss"], rel=1e-6)
    (samples,) = events.Images("samples")
    (pairs,) = events.Images("reconstructions")
    # 4 samples: a 2 x 2 grid of 28 px tiles with 1 px padding; 2 originals, each beside its reconstruction: 2 x 2
    assert (samples.step, samples.width, samples.height) == (10, 2 * 29 + 1, 2 * 29 + 1)
    assert (pairs.step, pairs.width, pairs.height) == (10, 2 * 29 + 1, 2 * 29 + 1)
    (text,) = [t for t in events.Tags()["tensors"] if t.startswith("recipe")]
    recipe = events.Tensors(text)[0].tensor_proto.string_val[0].decode()
    assert "latent_dim: 3" in recipe and "max_steps: 10" in recipe
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model.latent_dim"].number_value == 3 and hparams["model.name"].string_value == "vae"
    assert hparams["train.loggers"].string_value == "['tensorboard']"


def wandb_records(path: str):
    """The protobuf records of a W&B transaction log (.wandb): a LevelDB-style log of 32 KiB blocks, each record a
    7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes, after a 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data, pos, parts = open(path, "rb").read(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the zero padding at the end of a block
            pos += left
            continue
        parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(parts)
            parts = b""


def test_wandb_offline_run_holds_scalars_grids_and_config(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("wandb", reason="wandb is the optional extra zoo[wandb] (in zoo[dev])")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train(tmp_path, "wandb")
    run = tmp_path / "run"
    assert not (run / "tb").exists()  # only the trackers asked for
    (log,) = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert log.endswith(f"run-{(run / 'wandb_id').read_text()}.wandb")  # the id a resumed run continues
    records = list(wandb_records(log))
    # the recipe reaches the log in the run record or, when wandb sends it after the run starts, a config record
    config = {c.key: json.loads(c.value_json) for r in records if r.WhichOneof("record_type") in ("run", "config")
              for c in (r.run.config.update if r.WhichOneof("record_type") == "run" else r.config.update)}
    assert config["model"]["latent_dim"] == 3 and config["train"]["loggers"] == ["wandb"]
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["_step"] for h in history] == [5, 10]
    assert history[0]["vae/loss"] == pytest.approx(metrics[0]["vae/loss"], rel=1e-6)
    assert (history[1]["samples/_type"], history[1]["samples/width"], history[1]["samples/height"]) == (
        "image-file", 2 * 29 + 1, 2 * 29 + 1)
    assert (history[1]["reconstructions/width"], history[1]["reconstructions/height"]) == (59, 59)
    assert (run / "wandb" / log.split("/")[-2] / "files" / history[1]["samples/path"]).is_file()


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """No key anywhere wandb looks, and no WANDB_MODE: the state of a fresh machine (restored afterwards)."""
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))


def test_wandb_without_a_login_logs_offline_and_says_so_in_one_line(tmp_path, monkeypatch, capsys, shared_data,
                                                                     no_wandb_login, one_thread):
    """Issue 21 (round 2), item 5: `zoo train ... train.loggers=[wandb]` on a machine never logged in to W&B."""
    pytest.importorskip("wandb", reason="wandb is the optional extra zoo[wandb] (in zoo[dev])")
    from conftest import REPO
    from zoo.commands.train import main

    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    assert main(["recipes/tiny_vae.yaml", "--out", str(run), "train.loggers=[wandb]", "train.max_steps=2",
                 "train.progress=false", "train.sample_every=0", "data.options.limit=64"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in out.splitlines() if line.startswith("zoo: wandb")]
    assert notes == ["zoo: wandb: no login found (no WANDB_API_KEY, no netrc entry from `wandb login`): logging "
                     "offline to <run>/wandb (WANDB_MODE=offline); upload later with `wandb sync`, or set "
                     "WANDB_MODE=disabled to skip it"], out
    assert "Traceback" not in err
    assert len(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))) == 1
    assert (run / "checkpoints" / "step_00000002").is_dir()


def test_a_wandb_login_or_an_explicit_mode_is_left_alone(tmp_path, monkeypatch, no_wandb_login):
    pytest.importorskip("wandb", reason="wandb is the optional extra zoo[wandb] (in zoo[dev])")
    import os

    from zoo.training.tracker_setup import prepare_wandb

    assert prepare_wandb(["tensorboard"]) is None and "WANDB_MODE" not in os.environ
    (tmp_path / "no.netrc").write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    assert prepare_wandb(["wandb"]) is None and "WANDB_MODE" not in os.environ  # `wandb login` was run
    (tmp_path / "no.netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert prepare_wandb(["wandb"]) is None and os.environ["WANDB_MODE"] == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert prepare_wandb(["wandb"]) is not None and os.environ["WANDB_MODE"] == "offline"


def test_wandb_not_installed_fails_before_the_run_folder_in_one_line(tmp_path, monkeypatch, capsys, shared_data):
    from conftest import REPO
    from zoo.commands.train import main

    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    assert main(["recipes/tiny_vae.yaml", "--out", str(tmp_path / "run"), "train.loggers=[wandb]"]) == 2
    assert capsys.readouterr().err == ("error: train.loggers names wandb, which is not installed: pip install "
                                       "'zoo[wandb]' (or wandb), or drop wandb from train.loggers\n")
    assert not (tmp_path / "run").exists()
