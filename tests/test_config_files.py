"""`vaezoo train --config FILE`: TOML, YAML and JSON; the command line wins; a run's config.json reproduces
it bit for bit; unknown keys and bad values are one line; nothing in a file is ever executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaezoo.config_files import KEYS, read_train_config
from vaezoo.errors import UsageError
from vaezoo.registry import get_registry

from .test_resume import assert_same_results

TOML = """
variant = "conv-fashion"
dataset = "synthetic"
seed = 5
max_steps = 2
device = "cpu"
precision = "32"
trackers = []

[hparams]
batch_size = 512
latent_dim = 3
beta = 2.5
"""
YAML = """
variant: conv-fashion
dataset: synthetic
seed: 5
max_steps: 2
device: cpu
precision: "32"
trackers: []
hparams:
  batch_size: 512
  latent_dim: 3
  beta: 2.5
"""
SETTINGS = {"variant": "conv-fashion", "dataset": "synthetic", "seed": 5, "max_steps": 2, "device": "cpu",
            "precision": "32", "trackers": [], "hparams": {"batch_size": 512, "latent_dim": 3, "beta": 2.5}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text", [("run.toml", TOML), ("run.yaml", YAML), ("run.yml", YAML),
                                        ("run.json", json.dumps(SETTINGS))])
def test_every_format_reads_the_same_settings(tmp_path, name, text):
    assert read_train_config(write(tmp_path, name, text), get_registry()) == SETTINGS


def test_a_config_file_trains_and_the_command_line_wins(tmp_path, cli):
    config = write(tmp_path, "run.toml", TOML)
    result = cli("train", "--config", str(config), "--seed", "7", "--beta", "3", "-o", "latent_dim=4",
                 "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["seed"] == 7 and recorded["max_steps"] == 2 and recorded["dataset"] == "synthetic"
    assert {key: recorded["hparams"][key] for key in ("batch_size", "beta", "latent_dim")} == {
        "batch_size": 512, "beta": 3.0, "latent_dim": 4}  # the file's, then --beta and -o over it


def test_a_runs_config_json_reproduces_it_bit_for_bit(small_run, tmp_path, cli):
    result = cli("train", "--config", str(small_run / "config.json"), "--out", str(tmp_path / "again"))
    assert result.code == 0, result.err
    assert_same_results(tmp_path / "again", small_run)


def test_python_api_takes_a_config_file_with_overrides(tmp_path):
    import vaezoo
    from vaezoo.api import train_from_config

    path = train_from_config(write(tmp_path, "run.yaml", YAML), out=tmp_path / "run", hparams={"beta": 1.5})
    recorded = json.loads((path / "config.json").read_text())
    assert recorded["hparams"]["beta"] == 1.5 and recorded["hparams"]["latent_dim"] == 3
    assert vaezoo.train_from_config is train_from_config


@pytest.mark.parametrize("name, text, words", [
    ("run.toml", 'sed = 3\n', ("unknown key 'sed' in", "run.toml", "Did you mean: seed?")),
    ("run.toml", 'variant = "conv-fashion"\n[hparams]\nbta = 2.0\n',
     ("unknown option 'bta' in", "run.toml [hparams]", "Did you mean: beta?")),
    ("run.toml", 'variant = "conv-fashon"\n', ("unknown variant 'conv-fashon' in", "Did you mean: conv-fashion?")),
    ("run.toml", 'seed = "zero"\n', ("'seed' must be a whole number", "'zero'")),
    ("run.toml", 'seed = true\n', ("'seed' must be a whole number",)),
    ("run.yaml", 'max_steps: 0\n', ("'max_steps' must be a whole number of at least 1",)),
    ("run.yaml", 'trackers: tensorboard\n', ("'trackers' must be a list of tracker names",)),
    ("run.json", '{"dist_timeout": NaN}', ("'dist_timeout' must be a number of seconds above 0",)),
    ("run.toml", 'variant = "conv-fashion"\n[hparams]\nbeta = -1.0\n', ("run.toml", "beta", "outside the valid range")),
    ("run.yaml", '- variant\n- conv-fashion\n', ("must hold a table of settings",)),
    ("run.toml", 'variant = "conv-fashion\n', ("is not valid TOML",)),
    ("run.yaml", 'variant: [conv-fashion\n', ("is not valid YAML",)),
    ("run.json", '{"variant": ', ("is not valid JSON",)),
    ("run.ini", 'variant = x\n', ("must end in .toml, .yaml, .yml, .json",)),
])
def test_bad_config_files_are_one_line(tmp_path, refused, name, text, words):
    config = write(tmp_path, name, text)
    refused("train", "--config", str(config), "--out", str(tmp_path / "run"), words=words, code=2)
    assert not (tmp_path / "run").exists()


def test_yaml_tags_are_never_executed(tmp_path, refused):
    marker = tmp_path / "executed"
    config = write(tmp_path, "evil.yaml", f'variant: !!python/object/apply:os.system ["touch {marker}"]\n')
    refused("train", "--config", str(config), words=("is not valid YAML",), code=2)
    assert not marker.exists()


def test_missing_and_oversized_files_are_refused(tmp_path, refused):
    refused("train", "--config", str(tmp_path / "none.toml"), words=("no such file",), code=2)
    big = write(tmp_path, "big.json", " " * (2 << 20) + "{}")
    refused("train", "--config", str(big), words=("larger than 1024 KiB",), code=2)


def test_config_is_refused_with_resume(small_run, tmp_path, refused):
    config = write(tmp_path, "run.toml", TOML)
    refused("train", "--resume", str(small_run), "--config", str(config), words=("--config", "cannot be given"),
            untouched=small_run)


def test_every_train_setting_is_a_config_key():
    """What the command line can say, a file can: every keyword of vaezoo.train besides the -o texts."""
    import inspect

    from vaezoo.api import train

    keywords = set(inspect.signature(train).parameters) - {"options", "console"}
    assert keywords <= set(KEYS)


def test_no_variant_anywhere_is_one_line(tmp_path):
    from vaezoo.api import train_from_config

    with pytest.raises(UsageError, match="names no variant"):
        train_from_config(write(tmp_path, "run.toml", 'seed = 1\n'))


def test_track_none_clears_the_files_trackers(tmp_path, cli):
    config = write(tmp_path, "run.toml", TOML.replace("trackers = []", 'trackers = ["tensorboard"]'))
    result = cli("train", "--config", str(config), "--track", "none", "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["trackers"] == []
    assert not (tmp_path / "run" / "tensorboard").exists()
