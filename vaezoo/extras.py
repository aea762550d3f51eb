"""Optional extras: importing a package that `pip install 'vaezoo[EXTRA]'` provides, or saying so in one line."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from vaezoo.errors import MissingExtraError, VaezooError


def require(module: str, *, feature: str, extra: str | None, package: str | None = None) -> ModuleType:
    """`module`, imported; when it is not installed, a MissingExtraError naming `feature` and the extra
    (None for a package vaezoo depends on, which a broken environment may still lack)."""
    top = module.partition(".")[0]
    if importlib.util.find_spec(top) is None:
        raise MissingExtraError(feature, package or top, extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # installed but broken: the user's environment, said in one line
        raise VaezooError(f"{feature} needs {package or top}, which is installed but fails to import: {exc}") from None
