"""User-facing errors: the CLI prints their message as one line and exits non-zero.

Anything that is not a `VaezooError` is a bug in vaezoo or a plugin and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VaezooError(Exception):
    """A mistake the user can fix (bad option, missing file...). `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(VaezooError):
    """Bad command-line input: unknown names, out-of-range options."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name that is not registered; the message suggests the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str], note: str = "", where: str = ""):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = f" Known: {', '.join(known)}." if known and not close else ""
        place = f" in {where}" if where else ""
        super().__init__(f"unknown {kind} '{name}'{place}.{hint}{listing}{note}")
        self.kind, self.name, self.suggestions = kind, name, close


class NotApplicable(UsageError):
    """Something asked of a model that its structure does not have (a flat code, a density...)."""


class MissingExtraError(UsageError):
    """A feature needs a package that is not installed; the message names the extra that installs it."""

    def __init__(self, feature: str, package: str, extra: str | None):
        install = f"pip install 'vaezoo[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the {package} package: {install}")


class PluginConflictError(VaezooError):
    """Two plugins registered the same name for the same kind."""


class DataError(VaezooError):
    """A dataset is missing, unreadable or malformed."""


class WeightsError(VaezooError):
    """A weights, checkpoint or run file is missing, corrupt or not ours."""


class StorageError(VaezooError):
    """A run file could not be written (disk full, no permission); earlier files are untouched."""


class DistributedError(VaezooError):
    """A torchrun process lost the others (one died, or a collective timed out); the job stops."""


class NonFiniteLossError(VaezooError):
    """A loss term became NaN or infinite; training stopped without checkpointing the bad state."""

    exit_code = 3


class TrainingInterrupted(VaezooError):
    """Ctrl-C or SIGTERM stopped training after a checkpoint; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
