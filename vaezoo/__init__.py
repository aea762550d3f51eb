"""vaezoo: a plugin-based zoo of variational autoencoders.

Importing the package is cheap (no torch): plugins need only `hookimpl`.
"""

import pluggy

from ._version import __version__

#: Decorate plugin functions named after the hooks in vaezoo.hookspecs.
hookimpl = pluggy.HookimplMarker("vaezoo")

__all__ = ["__version__", "hookimpl"]
