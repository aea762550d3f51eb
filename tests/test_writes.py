"""Every write goes through one path: output that cannot be written is one error line and leaves no
half-written file; no write follows a planted link; concurrent writers never share a temporary."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import vaezoo
from vaezoo.errors import StorageError
from vaezoo.storage import checkpoint
from vaezoo.storage.files import atomic_write_bytes, is_temporary


@pytest.fixture
def run(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or is_temporary(p.name))


WRITERS = {  # a command writing one output, given where
    "evaluate": lambda source, out: ("evaluate", str(source), "-k", "1", "--out", str(out)),
    "sample": lambda source, out: ("sample", str(source), "--n", "4", "--out", str(out)),
    "export": lambda source, out: ("export", str(source), "--out", str(out)),
    "export-folder": lambda source, out: ("export", str(source), "--out", str(out.with_suffix(""))),
    "train": lambda source, out: ("train", "conv-fashion", "--dataset", "synthetic", "--max-steps", "1",
                                  "--out", str(out.with_suffix(""))),
}
SUFFIX = {"evaluate": ".json", "sample": ".png", "export": ".safetensors", "export-folder": ".x", "train": ".x"}


@pytest.mark.parametrize("command", WRITERS)
def test_out_under_a_regular_file(refused, small_run, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = blocker / "deeper" / f"result{SUFFIX[command]}"
    refused(*WRITERS[command](small_run, out), words=(str(blocker),), untouched=tmp_path)


@pytest.mark.parametrize("command", ["evaluate", "sample", "export"])
def test_out_through_a_dangling_link_creates_nothing(refused, small_run, tmp_path, command):
    target = tmp_path / f"target{SUFFIX[command]}"
    link = tmp_path / f"link{SUFFIX[command]}"
    link.symlink_to(target)
    for overwrite in ((), ("--overwrite",)):
        refused(*WRITERS[command](small_run, link), *overwrite, words=(str(link), "symbolic link"))
        assert not target.exists() and link.is_symlink()


@pytest.mark.parametrize("command", ["evaluate", "sample", "export"])
def test_out_that_is_a_folder_or_a_pipe(refused, small_run, tmp_path, command):
    folder = tmp_path / f"folder{SUFFIX[command]}"
    (folder / "inside").mkdir(parents=True)
    refused(*WRITERS[command](small_run, folder), "--overwrite", words=(str(folder), "folder"), untouched=tmp_path)
    pipe = tmp_path / f"pipe{SUFFIX[command]}"
    os.mkfifo(pipe)
    refused(*WRITERS[command](small_run, pipe), "--overwrite", words=(str(pipe), "not a regular file"))
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)


@pytest.mark.parametrize("name", ["eval.json", "model-export.safetensors"])
def test_a_link_planted_at_the_old_temporary_name_is_never_written_through(cli, run, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / f".{name}.tmp").symlink_to(victim)
    args = ("evaluate", str(run), "-k", "1", "--out", str(tmp_path / name)) if name.endswith(".json") else \
        ("export", str(run), "--out", str(tmp_path / name))
    result = cli(*args)
    assert result.code == 0, result.err
    assert victim.read_text() == "precious" and (tmp_path / f".{name}.tmp").is_symlink()


def test_concurrent_writers_never_share_a_temporary(tmp_path, monkeypatch):
    """Two writers of one file, both with their temporary written and not yet renamed: both finish, the file
    holds one of the two complete contents, and no temporary is left."""
    target = tmp_path / "export.safetensors"
    both_written = threading.Barrier(2, timeout=20)
    fsync = os.fsync

    def wait_for_the_other(fd):
        fsync(fd)
        both_written.wait()

    monkeypatch.setattr(os, "fsync", wait_for_the_other)
    failures = []

    def write(data: bytes) -> None:
        try:
            atomic_write_bytes(target, data)
        except StorageError as exc:
            failures.append(exc)

    payloads = [b"A" * 100_000, b"B" * 100_000]
    threads = [threading.Thread(target=write, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures and target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_folder_export_that_runs_out_of_disk_leaves_nothing_and_can_be_retried(run, tmp_path, monkeypatch, cli):
    out = tmp_path / "export"
    fsync, calls = os.fsync, []

    def second_file_fills_the_disk(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", second_file_fills_the_disk)
    result = cli("export", str(run), "--out", str(out))
    assert result.code == 1 and "No space left on device" in result.err and "Traceback" not in result.err
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.undo()
    assert cli("export", str(run), "--out", str(out)).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_export_never_replaces_a_runs_config(refused, run):
    refused("export", str(run), "--out", str(run), "--overwrite", words=(str(run), "holds a training run"),
            untouched=run)


@pytest.mark.parametrize("command, name", [
    ("export", "model.safetensors"), ("export", "checkpoints/epoch-0002.safetensors"), ("evaluate", "config.json"),
    ("evaluate", "metrics.jsonl"), ("sample", "samples.png"),
])
def test_no_other_command_replaces_a_runs_own_files(refused, run, command, name):
    out = run / name
    args = {"export": ("export", str(run)), "evaluate": ("evaluate", str(run), "-k", "1"),
            "sample": ("sample", str(run))}[command]
    refused(*args, "--out", str(out), "--overwrite", words=(str(out), "only training writes"), untouched=run)


def test_nan_weights_are_refused_by_evaluate_not_written_as_bare_nan(refused, run):
    tensors, meta = checkpoint.read(run / "model.safetensors")
    tensors["decoder.dense.0.bias"] = tensors["decoder.dense.0.bias"] * float("nan")
    checkpoint.write(run / "model.safetensors", tensors, {k: v for k, v in meta.items() if k != checkpoint.FORMAT_KEY})
    refused("evaluate", str(run), "-k", "1", words=("non-finite measures", "neg_elbo"), untouched=run)


#: Runs inside a private mount namespace (unshare -m): a read-only and a 16 KiB file system, real EROFS and ENOSPC.
NAMESPACE_SCRIPT = """
import json, os, subprocess, sys
from vaezoo.cli import main
run, read_only, full = sys.argv[1:4]
for folder, options in ((read_only, "ro"), (full, "size=16k")):
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", folder], check=True)
results = {}
for name, args in json.loads(sys.argv[4]).items():
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    results[name] = [code, sorted(os.listdir(read_only)), sorted(os.listdir(full))]
print("RESULTS" + json.dumps(results))
"""


def test_a_read_only_or_full_file_system_is_one_line(run, tmp_path):
    if shutil.which("unshare") is None or sys.platform != "linux":
        pytest.skip("needs Linux and unshare")
    read_only, full = tmp_path / "ro", tmp_path / "full"
    read_only.mkdir()
    full.mkdir()
    commands = {
        "evaluate-ro": ["evaluate", str(run), "-k", "1", "--out", str(read_only / "eval.json")],
        "sample-ro": ["sample", str(run), "--n", "4", "--out", str(read_only / "s.png")],
        "export-ro": ["export", str(run), "--out", str(read_only / "m.safetensors")],
        "export-folder-ro": ["export", str(run), "--out", str(read_only / "hf")],
        "train-ro": ["train", "conv-fashion", "--dataset", "synthetic", "--max-steps", "1", "--out",
                     str(read_only / "run")],
        "sample-full": ["sample", str(run), "--n", "256", "--out", str(full / "s.png")],
        "export-full": ["export", str(run), "--out", str(full / "m.safetensors")],
    }
    try:
        done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                               textwrap.dedent(NAMESPACE_SCRIPT), str(run), str(read_only), str(full),
                               json.dumps(commands)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "COLUMNS": "200"})
    except OSError:
        pytest.skip("cannot start a mount namespace here")
    if "RESULTS" not in done.stdout and ("mount" in done.stderr or "unshare" in done.stderr):
        pytest.skip(f"no private mounts here: {done.stderr.strip().splitlines()[-1]}")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    results = json.loads(done.stdout.split("RESULTS", 1)[1])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(commands), done.stderr
    for name, (code, in_read_only, in_full) in results.items():
        assert code == 1, (name, code)
        assert in_read_only == [] and in_full == [], (name, in_read_only, in_full)
    assert sum("Read-only file system" in line for line in errors) == 5
    assert sum("No space left on device" in line for line in errors) == 2


def test_api_errors_are_vaezoos_own(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        vaezoo.export(run, blocker / "m.safetensors")
    with pytest.raises(StorageError):
        vaezoo.sample(run, blocker / "s.png", n=2)
