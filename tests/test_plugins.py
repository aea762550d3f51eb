"""Plugin discovery through real entry points, guarded loading, conflicts and plugin selection."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vaezoo import hookimpl, hookspecs
from vaezoo.errors import UsageError
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


def test_a_duplicate_name_skips_the_later_plugin_naming_both():
    """The first holder keeps the name; the later plugin is skipped as a whole, and says why."""
    registry = Registry()
    first = _Encoders("first")
    registry.add_plugin(first, "first-plugin")
    second = _Encoders("second")
    info = registry.add_plugin(second, "second-plugin")
    assert "encoder 'shared-name' is already registered by plugin 'first-plugin'" in info.error
    assert info.registered == [] and registry.failures() == [info]
    assert registry.get("encoder", "shared-name").target == "first.module:Encoder"
    assert not registry.manager.is_registered(second) and registry.manager.is_registered(first)


def test_a_third_party_part_named_like_a_built_in_one_is_skipped(tmp_path, small_run):
    make_distribution(tmp_path, "vaezoo-twin", {"twin": "vaezoo_twin"}, {"vaezoo_twin": """
        from vaezoo import hookimpl

        @hookimpl
        def register_encoders(register):
            register("conv", "vaezoo_twin:Other")
    """})
    result = run_subprocess("list", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    [warning] = result.stderr.strip().splitlines()
    assert "'twin' was skipped" in warning and "encoder 'conv'" in warning and "built-in plugin 'standard'" in warning
    assert "conv-fashion" in result.stdout
    # the built-in part is the one models are built from
    evaluated = run_subprocess("evaluate", str(small_run), "-k", "1", "--device", "cpu", "--out",
                               str(tmp_path / "e.json"), env={"PYTHONPATH": str(tmp_path)})
    assert evaluated.returncode == 0, evaluated.stderr


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


def test_every_hook_is_documented_and_registers_its_kind():
    """Like datasette: every hook has a doc entry, and each hook alone, called through add_plugin, lands an entry
    of its own kind (a hook the registry does not call, or files under another kind, fails here)."""
    hooks = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
    docs = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"`(register_\w+)\(register\)`", docs))
    assert documented == set(hooks), "docs/plugins.md and vaezoo.hookspecs list different hooks"
    for hook in hooks:
        def implementation(register):
            if hook == "register_variants":
                register(VariantSpec("only-var", "one hook", {"encoder": "x", "decoder": "x"}, "x",
                                     training_params(lr=1e-3, batch_size=8, epochs=1, latent_dim=2)))
            else:
                register("only-entry", "m:X")

        plugin = type("OneHook", (), {hook: staticmethod(hookimpl(implementation))})()
        registry = Registry()
        info = registry.add_plugin(plugin, "one-hook")
        assert info.error is None, (hook, info.error)
        [(kind, _)] = info.registered
        assert kind == HOOK_KINDS[hook] and registry.names(kind), hook


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
    def register_protocols(self, register):
        register("t-protocol", "m:PROTOCOL")

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
             "metric": "metric", "protocol": "protocol", "variant": "var"}
    for kind in HOOK_KINDS.values():
        assert registry.names(kind) == [f"t-{short[kind]}"]


# -- one bad plugin never takes the others down --------------------------------------------------------

BAD_PLUGINS = {  # distribution: (entry point name, module source); each is skipped, every other plugin works
    "vaezoo-shadow-datasets": ("datasets", """
        from vaezoo import hookimpl

        @hookimpl
        def register_datasets(register):
            register("fashion-mnist", "vaezoo_bad_0:load")
    """),
    "vaezoo-shadow-variant": ("conv-fashion", """
        from vaezoo import hookimpl

        @hookimpl
        def register_datasets(register):
            register("shadowed-data", "vaezoo_bad_1:load")
    """),
    "vaezoo-likelihood-twin": ("lik-twin", """
        from vaezoo import hookimpl

        @hookimpl
        def register_likelihoods(register):
            register("bernoulli", "vaezoo_bad_2:Other")
    """),
    "vaezoo-own-error": ("own-error", """
        from vaezoo import hookimpl
        from vaezoo.errors import UsageError

        @hookimpl
        def register_priors(register):
            raise UsageError("a plugin's own usage error")
    """),
    "vaezoo-twice": ("twice", """
        from vaezoo import hookimpl

        @hookimpl
        def register_priors(register):
            register("twice-prior", "vaezoo_bad_4:A")
            register("twice-prior", "vaezoo_bad_4:B")
    """),
    "vaezoo-not-a-string": ("not-a-string", """
        from vaezoo import hookimpl

        @hookimpl
        def register_encoders(register):
            register(12345, "vaezoo_bad_5:E")
    """),
    "vaezoo-exits": ("exits", "import sys\nsys.exit(3)\n"),
    "vaezoo-ctrl-c": ("ctrl-c", "raise KeyboardInterrupt\n"),
    "vaezoo-escape": ("escape", """
        from vaezoo import hookimpl
        from vaezoo.registry import get_registry
        from vaezoo.variant import VariantSpec

        @hookimpl
        def register_variants(register):
            from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING
            register(VariantSpec("../../escape", "runs outside runs/", CONV_PARTS, "beta-elbo", CONV_TRAINING))
    """),
    "vaezoo-unprintable": ("unprintable", """
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no message for you")

        raise Weird()
    """),
    "vaezoo-chatty": ("chatty", """
        print("hello from a plugin import")
        from vaezoo import hookimpl

        @hookimpl
        def register_priors(register):
            register("chatty-prior", "vaezoo_bad_10:P", "[/bold] markup that is not closed [red]")
    """),
    "vaezoo-bad-name": ("bad name", "x = 1\n"),
}
SKIPPED = {"datasets": "built-in plugin", "conv-fashion": "built-in plugin", "lik-twin": "likelihood 'bernoulli'",
           "own-error": "a plugin's own usage error", "twice": "registers prior 'twice-prior' twice",
           "not-a-string": "<int>", "exits": "SystemExit", "ctrl-c": "KeyboardInterrupt",
           "escape": "'../../escape' is not a plain name", "unprintable": "Weird", "bad name": "'bad name'"}


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("bad-site")
    for number, (dist, (entry, source)) in enumerate(BAD_PLUGINS.items()):
        make_distribution(site, dist, {entry: f"vaezoo_bad_{number}"}, {f"vaezoo_bad_{number}": source})
    return site


def test_bad_plugins_are_skipped_and_named_while_the_rest_work(bad_site):
    env = {"PYTHONPATH": str(bad_site)}
    listed = run_subprocess("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    variants = {v["name"]: v for v in json.loads(listed.stdout)}  # a chatty import does not spoil the JSON
    assert {"conv-fashion", "iwae", "vamp-vae"} <= set(variants) and "../../escape" not in variants
    assert variants["conv-fashion"]["plugin"] == "conv-fashion"
    plugins = json.loads(run_subprocess("plugins", "--json", env=env).stdout)
    third_party = {p["name"]: p for p in plugins if not p["builtin"]}
    assert set(SKIPPED) <= set(third_party)
    for name, words in SKIPPED.items():
        assert third_party[name]["error"] and words in third_party[name]["error"], (name, third_party[name])
        assert third_party[name]["registers"] == []
    assert third_party["chatty"]["error"] is None and "prior chatty-prior" in third_party["chatty"]["registers"]
    builtin = {p["name"]: p for p in plugins if p["builtin"]}
    assert builtin["datasets"]["error"] is None and "dataset fashion-mnist" in builtin["datasets"]["registers"]
    table = run_subprocess("list", "--parts", env=env)  # plugin text holding rich markup is shown as text
    assert table.returncode == 0 and "[/bold] markup" in table.stdout, table.stderr
    plain = run_subprocess("plugins", env=env)
    assert plain.returncode == 0 and "Traceback" not in plain.stderr
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(SKIPPED), listed.stderr


def test_names_are_checked_where_they_are_registered():
    def plugin_registering(**calls):
        class Plugin:
            @hookimpl
            def register_encoders(self, register):
                register(*calls["encoder"])
        return Plugin()

    for bad in ([None, "m:E"], ["a/b", "m:E"], ["..", "m:E"], ["ok", "m:E", 3], ["ok", "not a target"],
                ["x" * 101, "m:E"]):
        registry = Registry()
        info = registry.add_plugin(plugin_registering(encoder=bad), "p")
        assert info.error and registry.names("encoder") == [], bad
    info = Registry().add_plugin(plugin_registering(encoder=["fine-name_2.0+x", "pkg.mod:Attr.inner"]), "p")
    assert info.error is None


def test_a_hook_raising_a_vaezoo_error_is_named_not_fatal():
    class Raises:
        @hookimpl
        def register_priors(self, register):
            raise UsageError("configured wrongly")

    registry = Registry()
    info = registry.add_plugin(Raises(), "raiser")
    assert info.error == "UsageError: configured wrongly" and registry.failures() == [info]


def test_the_first_distribution_of_a_name_on_the_path_hides_later_ones(tmp_path):
    """As for imports: an older copy of a distribution further down sys.path is not loaded beside the first."""
    for site, prior in (("first", "from-first"), ("second", "from-second")):
        make_distribution(tmp_path / site, "vaezoo-dup", {"dup": f"vaezoo_dup_{site}"}, {f"vaezoo_dup_{site}": f"""
            from vaezoo import hookimpl

            @hookimpl
            def register_priors(register):
                register("{prior}", "m:P")
        """})
    result = run_subprocess("plugins", "--json", env={"PYTHONPATH": f"{tmp_path / 'first'}:{tmp_path / 'second'}"})
    [dup] = [p for p in json.loads(result.stdout) if p["name"] == "dup"]
    assert dup["registers"] == ["prior from-first"] and dup["error"] is None and result.stderr == ""
