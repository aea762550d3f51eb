"""The one path every file vaezoo writes goes through.

A file is written to a temporary name of its own (random, created exclusively, never through a
link), flushed to disk and renamed into place: readers see the old file or the new one, a failure
(full disk, read-only file system, a file where a folder should be) is one `StorageError` line
and leaves the earlier file and no temporary behind. The rename replaces a link at the
destination rather than writing through it, and a destination that is a link is refused anyway.
Nothing here deletes a file it did not create.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from vaezoo.errors import StorageError, UsageError

TEMPORARY_SUFFIX = ".vaezoo-tmp"
#: Temporary names: ".NAME.<12 hex digits>.vaezoo-tmp"; only files named so are ever taken for vaezoo's leftovers.
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}" + re.escape(TEMPORARY_SUFFIX))
_LONGEST_STEM = 200  # keeps a temporary name under the usual 255-byte limit
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def reason(exc: OSError) -> str:
    """The operating system's words for a failure, without Python's repetition of the path."""
    return exc.strerror or str(exc)


def is_temporary(name: str) -> bool:
    return TEMPORARY.fullmatch(name) is not None


def make_folder(path: Path) -> Path:
    """Create `path` and its parents; a file in the way or a refusal is one StorageError line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"cannot create the folder {path}: a file is in the way") from None
    except OSError as exc:
        raise StorageError(f"cannot create the folder {path}: {reason(exc)}") from None
    return path


def refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Never replace an earlier result unless asked to; never write to a folder or through a link."""
    path = Path(path)
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link; vaezoo does not write through links (choose another --out)")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name a file to write (or a new folder where a folder is expected)")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} is not a regular file (a device or a pipe?); vaezoo writes only regular files")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists; choose another --out or pass --overwrite")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write one file atomically (see the module's docstring)."""
    atomic_write_files({Path(path): data})


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to stream `path`'s new contents into, for data too large to hold at once (a decoded
    dataset): the same temporary, sync and rename as atomic_write_bytes, the rename only when the
    block ends without an error."""
    path = Path(path)
    _check_destination(path)
    try:
        temporary, stream = _open_temporary(path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {reason(exc)}") from None
    try:
        with stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {reason(exc)}; the earlier file is unchanged") from None
    finally:
        remove_quietly(temporary)  # gone already after the rename


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, encode_json(obj, path))


def parse_json(text: str | bytes) -> Any:
    """json.loads for untrusted text: nesting too deep for Python's parser is a ValueError like any bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def encode_json(obj: Any, path: Path) -> bytes:
    """Strict JSON: NaN and infinity are not JSON, so a value holding one is refused rather than written."""
    try:
        return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
    except ValueError:
        raise StorageError(f"cannot write {path}: it would hold NaN or infinity, which JSON cannot represent") from None


def atomic_write_files(files: Mapping[Path, bytes]) -> None:
    """Write several files so that a failure leaves every one of them as it was.

    Every temporary is written and synced first; only then are they renamed into place.
    """
    temporaries: dict[Path, Path] = {}
    current = None
    try:
        for current, data in files.items():
            _check_destination(current)
            make_folder(current.parent)
            temporaries[current] = _write_temporary(current, data)
        for current, temporary in list(temporaries.items()):
            os.replace(temporary, current)
            del temporaries[current]
        for folder in {path.parent for path in temporaries}:
            _sync_folder(folder)
    except OSError as exc:
        raise StorageError(f"cannot write {current}: {reason(exc)}; the earlier files are unchanged") from None
    finally:
        for temporary in temporaries.values():
            remove_quietly(temporary)


def _check_destination(path: Path) -> None:
    """Only a regular file (or nothing) is ever replaced: not a link, a folder, a device or a pipe."""
    if path.is_symlink():
        raise StorageError(f"cannot write {path}: it is a symbolic link, and vaezoo does not write through links")
    if path.exists() and not path.is_file():
        raise StorageError(f"cannot write {path}: it is {'a folder' if path.is_dir() else 'not a regular file'}")


def _open_temporary(path: Path) -> tuple[Path, BinaryIO]:
    """A new file beside `path` under a name no one else uses (created exclusively, never through a link)."""
    while True:
        temporary = path.with_name(f".{path.name[:_LONGEST_STEM]}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
        try:
            fd = os.open(temporary, _CREATE, 0o666)
        except FileExistsError:
            continue
        return temporary, os.fdopen(fd, "wb")


def _write_temporary(path: Path, data: bytes) -> Path:
    """A new file beside `path` under a name no one else uses, holding `data`, synced to disk."""
    temporary, stream = _open_temporary(path)
    try:
        with stream as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        remove_quietly(temporary)
        raise
    return temporary


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    """Remove a file this process created, if it is still there; a failure here must not hide the first one."""
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_file(path: Path) -> None:
    """Delete the file at `path` (a link itself, never its target; a folder is left alone)."""
    try:
        if not Path(path).is_dir() or Path(path).is_symlink():
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot delete {path}: {reason(exc)}") from None
