"""The listing commands answer without importing torch, and unknown names get suggestions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import sys
from vaezoo.cli import main
try:
    main({args!r})
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in ("torch", "torchvision", "numpy", "safetensors") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["list", "--parts"],
                                  ["plugins"], ["info", "conv-fashion"], ["--version"]])
def test_listing_commands_do_not_import_torch(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr


def test_list_json_describes_conv_fashion(cli):
    result = cli("list", "--json")
    assert result.code == 0
    spec = {v["name"]: v for v in json.loads(result.out)}["conv-fashion"]
    assert spec["parts"] == {"encoder": "conv", "decoder": "conv", "likelihood": "bernoulli",
                             "prior": "standard-normal", "divergence": "gaussian-kl"}
    assert spec["objective"] == "beta-elbo" and spec["dataset"] == "fashion-mnist"


def test_list_parts_covers_every_kind(cli):
    rows = json.loads(cli("list", "--parts", "--json").out)
    kinds = {r["kind"] for r in rows}
    assert {"encoder", "decoder", "likelihood", "prior", "divergence", "objective", "dataset", "metric"} <= kinds
    assert {"kind": "dataset", "name": "synthetic"}.items() <= next(
        r for r in rows if r["name"] == "synthetic").items()


def test_info_shows_schema_of_conv_fashion(cli):
    info = json.loads(cli("info", "conv-fashion", "--json").out)
    params = {p["name"]: p for p in info["params"]}
    assert {n: params[n]["default"] for n in params} == {
        "lr": 1e-4, "batch_size": 64, "epochs": 10, "latent_dim": 10, "beta": 1.0, "lambda": 0.01}
    assert params["beta"]["type"] == "float" and params["beta"]["range"] == "[0, inf)"
    assert params["lr"]["range"] == "(0, inf)"


@pytest.mark.parametrize("command", [["info", "conv-fashon"], ["train", "conv-fashon"]])
def test_unknown_variant_suggests_and_exits_2(cli, command):
    result = cli(*command)
    assert result.code == 2
    assert result.err.strip() == "error: unknown variant 'conv-fashon'. Did you mean: conv-fashion?"


def test_version(cli):
    from vaezoo import __version__

    assert cli("--version").out.strip() == f"vaezoo {__version__}"


@pytest.mark.parametrize("args, words", [
    (["train", "conv-fashion", "--seed", "abc"], "'--seed'"),
    (["train", "conv-fashion", "--max-steps", "0"], "'--max-steps'"),
    (["trian"], "No such command 'trian'"),
    (["info"], "Missing argument"),
    (["list", "--bogus"], "No such option: --bogus"),
])
def test_command_line_syntax_errors_are_one_line(cli, args, words):
    result = cli(*args)
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and words in result.err
    assert "Traceback" not in result.err and "╭" not in result.err


def test_no_arguments_shows_help(cli):
    result = cli()
    assert "Usage" in result.out and "error" not in result.err
