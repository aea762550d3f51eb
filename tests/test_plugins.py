"""Plugin discovery through real entry points, guarded loading, conflicts and plugin selection."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vaezoo import hookimpl, hookspecs
from vaezoo.errors import PluginConflictError
from vaezoo.hparams import training_params
from vaezoo.registry import HOOK_KINDS, Registry
from vaezoo.variant import VariantSpec

from .conftest import ROOT, run_subprocess

EXAMPLE = ROOT / "docs" / "examples" / "vaezoo-example-plugin"


def make_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution: dist-info with entry_points.txt, plus its modules."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[vaezoo]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder with the worked example installed by pip, and two broken plugins beside it."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(EXAMPLE)], check=True, capture_output=True)
    make_distribution(site, "vaezoo-broken-import", {"broken": "vaezoo_broken"},
                      {"vaezoo_broken": "raise ImportError('needs libfoo 3')\n"})
    make_distribution(site, "vaezoo-broken-hook", {"badhook": "vaezoo_badhook"}, {"vaezoo_badhook": """
        from vaezoo import hookimpl

        @hookimpl
        def register_encoders(register):
            raise RuntimeError('hook exploded')
    """})
    return site


def list_json(site: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = run_subprocess("list", "--json", env={"PYTHONPATH": str(site), **env})
    return result, json.loads(result.stdout)


def test_example_plugin_variant_listed_through_real_entry_point(site):
    result, variants = list_json(site)
    assert result.returncode == 0, result.stderr
    by_name = {v["name"]: v for v in variants}
    assert by_name["mlp-fashion"]["plugin"] == "mlp"
    assert by_name["mlp-fashion"]["parts"]["encoder"] == "example-mlp"
    assert "conv-fashion" in by_name


def test_broken_plugins_are_reported_and_skipped(site):
    result, variants = list_json(site)
    assert result.returncode == 0
    assert "broken" in result.stderr and "needs libfoo 3" in result.stderr
    assert "badhook" in result.stderr and "hook exploded" in result.stderr
    plugins = json.loads(run_subprocess("plugins", "--json", env={"PYTHONPATH": str(site)}).stdout)
    by_name = {p["name"]: p for p in plugins}
    assert by_name["broken"]["error"] == "ImportError: needs libfoo 3"
    assert by_name["broken"]["distribution"] == "vaezoo-broken-import"
    assert by_name["badhook"]["registers"] == [] and "hook exploded" in by_name["badhook"]["error"]
    assert by_name["mlp"]["error"] is None and "variant mlp-fashion" in by_name["mlp"]["registers"]
    assert by_name["conv-fashion"]["builtin"] is True


@pytest.mark.parametrize("selection, expected", [
    ("mlp", {"mlp"}),
    ("vaezoo-broken-import", {"broken"}),
    ("", set()),
    ("none", set()),
])
def test_plugin_selection_env(site, selection, expected):
    plugins = json.loads(run_subprocess("plugins", "--json",
                                        env={"PYTHONPATH": str(site), "VAEZOO_PLUGINS": selection}).stdout)
    third_party = {p["name"] for p in plugins if not p["builtin"]}
    builtin = {p["name"] for p in plugins if p["builtin"]}
    assert third_party == expected
    assert {"conv-fashion", "datasets"} <= builtin


@pytest.mark.slow
def test_example_plugin_trains(site, tmp_path):
    result = run_subprocess("train", "mlp-fashion", "--dataset", "synthetic", "--max-steps", "5",
                            "--out", str(tmp_path / "run"), env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["variant"] == "mlp-fashion" and config["hparams"]["hidden"] == 400


class _Encoders:
    def __init__(self, name: str):
        self.name = name

    @hookimpl
    def register_encoders(self, register):
        register("shared-name", f"{self.name}.module:Encoder")


def test_duplicate_name_is_an_error_naming_both_plugins():
    registry = Registry()
    registry.add_plugin(_Encoders("first"), "first-plugin")
    with pytest.raises(PluginConflictError, match="first-plugin.*second-plugin"):
        registry.add_plugin(_Encoders("second"), "second-plugin")


def test_duplicate_name_in_cli_is_one_error_line(site, tmp_path):
    make_distribution(tmp_path, "vaezoo-twin", {"twin": "vaezoo_twin"}, {"vaezoo_twin": """
        from vaezoo import hookimpl

        @hookimpl
        def register_encoders(register):
            register("conv", "vaezoo_twin:Other")
    """})
    result = run_subprocess("list", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "standard" in result.stderr and "twin" in result.stderr and "Traceback" not in result.stderr


def test_inline_plugin_registers_and_unregisters(fresh_registry):
    class Inline:
        @hookimpl
        def register_variants(self, register):
            register(VariantSpec("inline-vae", "test", {"encoder": "e", "decoder": "d", "likelihood": "l",
                                                         "prior": "p", "divergence": "k"}, "o",
                                 training_params(lr=1e-3, batch_size=8, epochs=1, latent_dim=2)))

    plugin = Inline()
    info = fresh_registry.add_plugin(plugin, "inline")
    assert info.registered == [("variant", "inline-vae")]
    assert fresh_registry.variant("inline-vae").schema["lr"].default == 1e-3
    assert fresh_registry.manager.is_registered(plugin)


def test_target_must_be_a_module_attribute_string():
    class Bad:
        @hookimpl
        def register_priors(self, register):
            register("oops", object())

    info = Registry().add_plugin(Bad(), "bad")
    assert "module:attribute" in info.error


def test_unloadable_target_is_a_clear_error():
    class Missing:
        @hookimpl
        def register_priors(self, register):
            register("ghost", "no_such_module_xyz:Prior")

    registry = Registry()
    registry.add_plugin(Missing(), "missing")
    with pytest.raises(Exception, match="prior 'ghost' from plugin 'missing' cannot be loaded"):
        registry.load("prior", "ghost")


def test_every_hook_is_documented_and_tested():
    """Like datasette: a hook without docs or a test is a hook nobody can rely on."""
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert sorted(hooks) == sorted(HOOK_KINDS)
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for hook in hooks:
        assert f"`{hook}(register)`" in docs, f"{hook} is not documented in docs/plugins.md"
        assert f"def {hook}(" in tests, f"{hook} has no test or example implementing it"


class EveryHook:
    """One plugin implementing every hook: each lands in the registry under its own kind."""

    @hookimpl
    def register_encoders(self, register):
        register("t-enc", "m:E")

    @hookimpl
    def register_decoders(self, register):
        register("t-dec", "m:D")

    @hookimpl
    def register_structures(self, register):
        register("t-struct", "m:S")

    @hookimpl
    def register_likelihoods(self, register):
        register("t-lik", "m:L")

    @hookimpl
    def register_priors(self, register):
        register("t-prior", "m:P")

    @hookimpl
    def register_divergences(self, register):
        register("t-div", "m:K")

    @hookimpl
    def register_objectives(self, register):
        register("t-obj", "m:O")

    @hookimpl
    def register_samplers(self, register):
        register("t-sampler", "m:Q")

    @hookimpl
    def register_datasets(self, register):
        register("t-data", "m:load")

    @hookimpl
    def register_trackers(self, register):
        register("t-track", "m:T")

    @hookimpl
    def register_metrics(self, register):
        register("t-metric", "m:METRIC")

    @hookimpl
    def register_variants(self, register):
        register(VariantSpec("t-var", "all test parts", {"encoder": "t-enc", "decoder": "t-dec",
                                                          "likelihood": "t-lik", "prior": "t-prior",
                                                          "divergence": "t-div"}, "t-obj",
                             training_params(lr=1e-3, batch_size=8, epochs=1, latent_dim=2), dataset="t-data"))


def test_each_hook_registers_its_kind():
    registry = Registry()
    info = registry.add_plugin(EveryHook(), "every")
    assert info.error is None
    assert sorted(kind for kind, _ in info.registered) == sorted(HOOK_KINDS.values())
    short = {"structure": "struct", "encoder": "enc", "decoder": "dec", "likelihood": "lik", "prior": "prior",
             "divergence": "div", "objective": "obj", "sampler": "sampler", "dataset": "data", "tracker": "track",
             "metric": "metric", "variant": "var"}
    for kind in HOOK_KINDS.values():
        assert registry.names(kind) == [f"t-{short[kind]}"]
