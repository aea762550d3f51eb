"""User-facing errors: the CLI prints their message as one line and exits non-zero.

Anything that is not a `VaezooError` is a bug in vaezoo or a plugin and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

SHOWN_LENGTH = 80


def shown(value: Any) -> str:
    """Untrusted text (from a file's metadata, a plugin) as it may appear in an error line: quoted, on one line,
    printable characters only and at most SHOWN_LENGTH of them; anything not a string is shown as its type."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    clean = "".join(c if c.isprintable() else "?" for c in value[:SHOWN_LENGTH])
    return f"'{clean}{'...' if len(value) > SHOWN_LENGTH else ''}'"


class VaezooError(Exception):
    """A mistake the user can fix (bad option, missing file...). `exit_code` is what the CLI returns.

    `scope` says who prints it under torchrun, so that it is printed once: "job" for an error every
    process meets alike (the options, an agreed stop), printed by rank 0; "node" for one that
    depends on a machine's files or memory, printed by each machine's first process.
    """

    exit_code = 1
    scope = "node"


class UsageError(VaezooError):
    """Bad command-line input: unknown names, out-of-range options."""

    exit_code = 2
    scope = "job"


class UnknownNameError(UsageError):
    """A name that is not registered; the message suggests the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str], note: str = "", where: str = ""):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = f" Known: {', '.join(known)}." if known and not close else ""
        place = f" in {where}" if where else ""
        super().__init__(f"unknown {kind} {shown(name)}{place}.{hint}{listing}{note}")
        self.kind, self.name, self.suggestions = kind, name, close


class NotApplicable(UsageError):
    """Something asked of a model that its structure does not have (a flat code, a density...)."""


class MissingExtraError(UsageError):
    """A feature needs a package that is not installed; the message names the extra that installs it."""

    def __init__(self, feature: str, package: str, extra: str | None):
        install = f"pip install 'vaezoo[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the {package} package: {install}")


class DataError(VaezooError):
    """A dataset is missing, unreadable or malformed."""


class WeightsError(VaezooError):
    """A weights, checkpoint or run file is missing, corrupt or not ours."""


class StorageError(VaezooError):
    """A run file could not be written (disk full, no permission); earlier files are untouched."""


class TooLargeError(VaezooError):
    """A model or a request that would need more memory than the machine has; refused before allocating."""


class DistributedError(VaezooError):
    """A torchrun process lost the others (one died, or a collective timed out); the job stops.

    Printed by rank 0 only: the process that failed prints its own cause.
    """

    scope = "job"


class NonFiniteLossError(VaezooError):
    """A loss term became NaN or infinite; training stopped without checkpointing the bad state."""

    exit_code = 3
    scope = "job"  # the processes agree on it before stopping


class TrainingInterrupted(VaezooError):
    """Ctrl-C or SIGTERM stopped training after a checkpoint; the exit code is 128 + the signal number."""

    scope = "job"

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
