"""vaezoo: a plugin-based zoo of variational autoencoders.

Importing the package is cheap (no torch): plugins need only `hookimpl`. The Python API
(`vaezoo.train`, `train_from_config`, `resume_training`, `evaluate`, `export`, `sample`,
`fit_sampler`, `load`, `push`) and `vaezoo.registry` resolve on first use.
"""

import importlib

import pluggy

from vaezoo._version import __version__

#: Decorate plugin functions named after the hooks in vaezoo.hookspecs.
hookimpl = pluggy.HookimplMarker("vaezoo")

_API = ("train", "train_from_config", "resume_training", "evaluate", "export", "sample", "draw", "fit_sampler", "load",
        "push")

__all__ = ["__version__", "hookimpl", "registry", *_API]


def __getattr__(name: str):
    """Lazy public API: nothing heavy is imported until it is used."""
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name == "registry":
        return importlib.import_module(".registry", __name__)
    raise AttributeError(f"module 'vaezoo' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
