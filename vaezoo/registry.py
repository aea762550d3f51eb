"""The registry of parts, datasets and variants, filled through pluggy hooks.

Plugins are found through the entry-point group ``vaezoo``; the built-in ones (under plugins/)
come the same way. A plugin that fails to import or register is skipped and recorded so the
CLI keeps working. Entries name their implementation as "module:attribute" and are imported
only when built, which keeps `vaezoo list` free of torch.

``VAEZOO_PLUGINS`` selects third-party plugins: unset loads all; a comma-separated list of
entry-point or distribution names loads only those; empty (or ``none``) loads none. Built-in
plugins always load.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from traceback import format_exc
from typing import Any

import pluggy

from vaezoo import hookspecs
from vaezoo.errors import PluginConflictError, UnknownNameError, VaezooError
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec

ENTRY_POINT_GROUP = "vaezoo"
BUILTIN_DISTRIBUTION = "vaezoo"
PLUGINS_ENV = "VAEZOO_PLUGINS"

#: hook name -> registry kind
HOOK_KINDS = {
    "register_structures": "structure",
    "register_encoders": "encoder",
    "register_decoders": "decoder",
    "register_likelihoods": "likelihood",
    "register_priors": "prior",
    "register_divergences": "divergence",
    "register_objectives": "objective",
    "register_samplers": "sampler",
    "register_datasets": "dataset",
    "register_trackers": "tracker",
    "register_metrics": "metric",
    "register_variants": "variant",
}
KINDS = tuple(HOOK_KINDS.values())


@dataclass(frozen=True)
class Entry:
    """One registered name: where its implementation lives and which plugin registered it."""

    kind: str
    name: str
    target: str | VariantSpec
    description: str
    plugin: str
    params: tuple[Param, ...] = ()

    def load(self) -> Any:
        """Import the implementation ("module:attribute"); a broken target is a clear error."""
        if isinstance(self.target, VariantSpec):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except Exception as exc:  # a plugin's import error is the user's environment, not our bug
            raise VaezooError(
                f"{self.kind} '{self.name}' from plugin '{self.plugin}' cannot be loaded "
                f"({self.target}): {type(exc).__name__}: {exc}"
            ) from exc
        return obj


@dataclass
class PluginInfo:
    """What `vaezoo plugins` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    registered: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None  # of `error`, for `vaezoo plugins --check`
    unknown_hooks: list[str] = field(default_factory=list)  # hook functions that match no hook spec (typos)


class Registry:
    """All registered entries by kind, plus the record of every plugin seen."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("vaezoo")
        self.manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}

    # -- filling -----------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, *, distribution: str | None = None,
                   version: str | None = None, builtin: bool = False) -> PluginInfo:
        """Register `plugin` (a module or object with hookimpls) and run its hooks.

        A plugin whose hooks raise is unregistered and recorded with its error; a name it
        shares with an earlier plugin raises PluginConflictError naming both.
        """
        info = PluginInfo(name, distribution, version, builtin)
        self.plugins[name] = info
        staged: list[Entry] = []
        try:
            self.manager.register(plugin, name=name)
            info.unknown_hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or ()
                                        if not caller.has_spec())
            for hook, kind in HOOK_KINDS.items():
                for impl in getattr(self.manager.hook, hook).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=self._collector(kind, name, staged))
        except VaezooError:
            self._drop(plugin, name)
            raise
        except Exception as exc:
            self._drop(plugin, name)
            info.error, info.traceback = f"{type(exc).__name__}: {exc}", format_exc()
            return info
        for entry in staged:
            self._add(entry)
            info.registered.append((entry.kind, entry.name))
        return info

    def _drop(self, plugin: object, name: str) -> None:
        if self.manager.is_registered(plugin):
            self.manager.unregister(plugin, name=name)

    def _collector(self, kind: str, plugin: str, staged: list[Entry]) -> Callable[..., None]:
        if kind == "variant":
            def register_variant(spec: VariantSpec) -> None:
                if not isinstance(spec, VariantSpec):
                    raise TypeError(f"register_variants expects a VariantSpec, got {type(spec).__name__}")
                staged.append(Entry("variant", spec.name, spec, spec.description, plugin))
            return register_variant

        def register(name: str, target: str, description: str = "", params: tuple[Param, ...] = ()) -> None:
            if not isinstance(target, str) or ":" not in target:
                raise TypeError(f"{kind} '{name}': target must be a 'module:attribute' string, got {target!r}")
            params = tuple(params)
            if not all(isinstance(p, Param) for p in params):
                raise TypeError(f"{kind} '{name}': params must be vaezoo.hparams.Param objects")
            staged.append(Entry(kind, name, target, description, plugin, params))
        return register

    def _add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise PluginConflictError(
                f"{entry.kind} '{entry.name}' is registered by both plugin '{existing.plugin}' and "
                f"plugin '{entry.plugin}'; uninstall one, or select plugins with {PLUGINS_ENV}"
            )
        self._entries[entry.kind][entry.name] = entry

    def load_entry_points(self, selection: str | None = None) -> None:
        """Add every plugin of the ``vaezoo`` entry-point group that `selection` allows."""
        wanted = _parse_selection(selection)
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            builtin = dist == BUILTIN_DISTRIBUTION
            if not builtin and wanted is not None and ep.name not in wanted and dist not in wanted:
                continue
            if ep.name in self.plugins:
                continue  # the same distribution seen twice on sys.path
            version = ep.dist.version if ep.dist is not None else None
            try:
                plugin = ep.load()
            except Exception as exc:
                self.plugins[ep.name] = PluginInfo(ep.name, dist, version, builtin,
                                                   error=f"{type(exc).__name__}: {exc}", traceback=format_exc())
                continue
            self.add_plugin(plugin, ep.name, distribution=dist, version=version, builtin=builtin)

    # -- reading -----------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            failed = ", ".join(f"'{p.name}' ({p.error})" for p in self.failures())
            note = f" Plugins that failed to load (see `vaezoo plugins`): {failed}." if failed else ""
            raise UnknownNameError(kind, name, self._entries[kind], note) from None

    def load(self, kind: str, name: str) -> Any:
        return self.get(kind, name).load()

    def variant(self, name: str) -> VariantSpec:
        return self.get("variant", name).target  # type: ignore[return-value]

    def provenance(self, kind: str, name: str) -> dict[str, str]:
        """Which plugin registered `name`, from which distribution and version: what weights record
        so a file names what it needs and a layout change between plugin versions is told as such."""
        entry = self.get(kind, name)
        info = self.plugins.get(entry.plugin)
        found = {"plugin": entry.plugin}
        if info is not None and info.distribution:
            found["plugin_distribution"] = info.distribution
        if info is not None and info.version:
            found["plugin_version"] = info.version
        return found

    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]


def _parse_selection(selection: str | None) -> set[str] | None:
    if selection is None:
        return None
    names = {s.strip() for s in selection.split(",") if s.strip()}
    return set() if names <= {"none"} else names


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, filled from entry points on first use."""
    global _default
    if _default is None:
        registry = Registry()
        registry.load_entry_points(os.environ.get(PLUGINS_ENV))
        _default = registry
    return _default


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or forget) the process-wide registry; for tests and embedding applications."""
    global _default
    _default = registry

