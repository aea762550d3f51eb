"""The registry of parts, datasets and variants, filled through pluggy hooks.

Plugins are found through the entry-point group ``vaezoo``; the built-in ones (under plugins/)
come the same way. A plugin is identified by its distribution and entry-point name, and one bad
plugin never takes the others down: a plugin that fails to import or register (whatever it
raises, SystemExit and KeyboardInterrupt included), registers a name that is not a plain name,
registers a name twice, or claims an entry-point or part name another plugin already holds, is
skipped and recorded, and every other plugin keeps working. Built-in plugins load first, so no
third-party plugin can shadow them. Entries name their implementation as "module:attribute" and
are imported only when built, which keeps `vaezoo list` free of torch.

``VAEZOO_PLUGINS`` selects third-party plugins: unset loads all; a comma-separated list of
entry-point or distribution names loads only those; empty (or ``none``) loads none. Built-in
plugins always load.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from traceback import format_exc
from typing import Any

import pluggy

from vaezoo import hookspecs
from vaezoo.errors import UnknownNameError, VaezooError, shown
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
    "register_protocols": "protocol",
    "register_variants": "variant",
}
KINDS = tuple(HOOK_KINDS.values())
#: Registered and entry-point names: they become parts of paths (runs/VARIANT/...) and of messages.
NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]?[\w.]*")
#: What a plugin may raise that must not end the command: anything, SystemExit and KeyboardInterrupt included.
PLUGIN_FAILURES = (BaseException,)


class PluginRejected(Exception):
    """A plugin registered something vaezoo cannot accept; the plugin is skipped."""


def describe_failure(exc: BaseException) -> str:
    """'TypeError: message' on one line, whatever the exception's own str() does."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message cannot be shown)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def check_name(kind: str, name: Any) -> str:
    """A registered name: a string of letters, digits and . _ + - (no '/', no '..')."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise PluginRejected(f"{kind} name {shown(name)} is not a plain name (letters, digits and . _ + -, "
                             "at most 100, no '..')")
    return name


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
        except PLUGIN_FAILURES as exc:  # a plugin's import error is the user's environment, not our bug
            raise VaezooError(
                f"{self.kind} '{self.name}' from plugin '{self.plugin}' cannot be loaded "
                f"({self.target}): {describe_failure(exc)}"
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
    """All registered entries by kind, plus the record of every plugin seen.

    `plugins` holds each plugin by name (one that failed keeps its name, with its error);
    `skipped` the plugins refused because their name was already taken.
    """

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("vaezoo")
        self.manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.skipped: list[PluginInfo] = []

    # -- filling -----------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, *, distribution: str | None = None,
                   version: str | None = None, builtin: bool = False) -> PluginInfo:
        """Register `plugin` (a module or object with hookimpls) and run its hooks.

        Whatever goes wrong (its hooks raise anything, it registers a bad or duplicate name, a name
        another plugin holds) the plugin is unregistered and recorded with its error; the rest stay.
        """
        info = PluginInfo(name, distribution, version, builtin)
        if not self._claim(info):
            return info
        staged: list[Entry] = []
        try:
            check_name("plugin", name)
            self.manager.register(plugin, name=name)
            info.unknown_hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or ()
                                        if not caller.has_spec())
            for hook, kind in HOOK_KINDS.items():
                for impl in getattr(self.manager.hook, hook).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=self._collector(kind, name, staged))
            self._check_new(staged)
        except PLUGIN_FAILURES as exc:
            self._drop(plugin, name)
            info.error = str(exc) if isinstance(exc, PluginRejected) else describe_failure(exc)
            info.traceback = None if isinstance(exc, PluginRejected) else format_exc()
            return info
        for entry in staged:
            self._entries[entry.kind][entry.name] = entry
            info.registered.append((entry.kind, entry.name))
        return info

    def _claim(self, info: PluginInfo) -> bool:
        """Take `info.name` for this plugin; a name already held (a built-in's, say) keeps its holder."""
        holder = self.plugins.get(info.name)
        if holder is None:
            self.plugins[info.name] = info
            return True
        origin = "vaezoo's built-in plugin" if holder.builtin else \
            f"the plugin from {shown(holder.distribution) if holder.distribution else 'an unknown distribution'}"
        info.error = f"its name {shown(info.name)} is already taken by {origin}"
        self.skipped.append(info)
        return False

    def _drop(self, plugin: object, name: str) -> None:
        with contextlib.suppress(Exception):
            if self.manager.get_plugin(name) is plugin:
                self.manager.unregister(plugin, name=name)

    def _collector(self, kind: str, plugin: str, staged: list[Entry]) -> Callable[..., None]:
        if kind == "variant":
            def register_variant(spec: VariantSpec) -> None:
                if not isinstance(spec, VariantSpec):
                    raise PluginRejected(f"register_variants expects a VariantSpec, got {type(spec).__name__}")
                check_name("variant", spec.name)
                for part_kind, part in (*spec.parts.items(), ("objective", spec.objective), ("dataset", spec.dataset)):
                    check_name(f"variant {spec.name}'s {part_kind}", part)
                if not isinstance(spec.description, str) or not isinstance(spec.paper, str):
                    raise PluginRejected(f"variant {spec.name}: description and paper must be strings")
                staged.append(Entry("variant", spec.name, spec, spec.description, plugin))
            return register_variant

        def register(name: str, target: str, description: str = "", params: tuple[Param, ...] = ()) -> None:
            check_name(kind, name)
            if not isinstance(target, str) or TARGET.fullmatch(target) is None:
                raise PluginRejected(f"{kind} '{name}': target must be a 'module:attribute' string, "
                                     f"got {shown(target) if isinstance(target, str) else type(target).__name__}")
            if not isinstance(description, str):
                raise PluginRejected(f"{kind} '{name}': the description must be a string")
            params = tuple(params) if isinstance(params, (tuple, list)) else None
            if params is None or not all(isinstance(p, Param) for p in params):
                raise PluginRejected(f"{kind} '{name}': params must be a tuple of vaezoo.hparams.Param")
            staged.append(Entry(kind, name, target, description, plugin, params))
        return register

    def _check_new(self, staged: list[Entry]) -> None:
        """A plugin's names are new: not registered twice by it, nor already by another plugin."""
        seen: set[tuple[str, str]] = set()
        for entry in staged:
            key = (entry.kind, entry.name)
            if key in seen:
                raise PluginRejected(f"it registers {entry.kind} '{entry.name}' twice")
            seen.add(key)
            existing = self._entries[entry.kind].get(entry.name)
            if existing is not None:
                holder = self.plugins.get(existing.plugin)
                whose = "vaezoo's built-in plugin" if holder is not None and holder.builtin else "plugin"
                raise PluginRejected(f"{entry.kind} '{entry.name}' is already registered by {whose} "
                                     f"'{existing.plugin}' (select plugins with {PLUGINS_ENV})")

    def load_entry_points(self, selection: str | None = None) -> None:
        """Add every plugin of the ``vaezoo`` entry-point group that `selection` allows, built-in ones first."""
        wanted = _parse_selection(selection)
        for ep, dist, version in sorted(_entry_points(), key=lambda e: (e[1] != BUILTIN_DISTRIBUTION, e[0].name)):
            builtin = dist == BUILTIN_DISTRIBUTION
            if not builtin and wanted is not None and ep.name not in wanted and dist not in wanted:
                continue
            info = PluginInfo(ep.name, dist, version, builtin)
            if not self._claim(info):
                continue
            with contextlib.redirect_stdout(sys.stderr):  # a chatty plugin must not spoil `--json` output
                try:
                    check_name("plugin", ep.name)
                    plugin = ep.load()
                except PLUGIN_FAILURES as exc:
                    info.error = str(exc) if isinstance(exc, PluginRejected) else describe_failure(exc)
                    info.traceback = None if isinstance(exc, PluginRejected) else format_exc()
                    continue
                del self.plugins[ep.name]
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
        """Every plugin that was skipped, with its error."""
        return [p for p in (*self.plugins.values(), *self.skipped) if p.error]


def _entry_points() -> Iterator[tuple[metadata.EntryPoint, str | None, str | None]]:
    """(entry point, distribution, version) for the ``vaezoo`` group. As for imports, the first
    distribution of a name on sys.path hides later ones; a distribution whose metadata cannot be read
    is left out rather than ending the command."""
    try:
        distributions = list(metadata.distributions())
    except Exception:
        return
    seen: set[str] = set()
    for dist in distributions:
        try:
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            if not eps:
                continue  # most installed packages: their metadata need not be parsed
            name, version = dist.metadata["Name"], dist.version
            key = re.sub(r"[-_.]+", "-", name).lower()
        except Exception:
            continue
        if key in seen:
            continue
        seen.add(key)
        for ep in eps:
            yield ep, name, version


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

