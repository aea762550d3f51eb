"""The run folder: vaezoo deletes only what its manifest says it wrote, follows no link out of the folder,
checks a folder for another run under the lock, and keeps as many epoch checkpoints as asked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vaezoo.storage.runs import MANIFEST

from .conftest import SMALL_RUN, snapshot
from .test_resume import assert_same_results

USER_FILES = {"holiday.png": b"my picture", "notes.txt": b"mine", ".draft.tmp": b"my temporary",
              "checkpoints/mine.safetensors": b"my weights", "checkpoints/.notes.tmp": b"my notes",
              "checkpoints/step-mine.safetensors": b"named like vaezoo's"}


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


def add_user_files(run: Path) -> None:
    for name, data in USER_FILES.items():
        (run / name).write_bytes(data)


def assert_user_files_kept(run: Path) -> None:
    for name, data in USER_FILES.items():
        assert (run / name).read_bytes() == data, name


def overwrite(cli, run: Path, *extra: str):
    return cli("train", *SMALL_RUN, "--epochs", "1", "--max-steps", "1", "--out", str(run), "--overwrite", *extra)


def test_overwrite_deletes_only_what_the_run_wrote(cli, run_copy):
    add_user_files(run_copy)
    result = overwrite(cli, run_copy)
    assert result.code == 0, result.err
    assert_user_files_kept(run_copy)
    assert not (run_copy / "checkpoints" / "epoch-0002.safetensors").exists()  # the earlier run's own files went
    assert json.loads((run_copy / "metrics.jsonl").read_text())["step"] == 1
    manifest = json.loads((run_copy / MANIFEST).read_text())["files"]
    assert "checkpoints/epoch-0001.safetensors" in manifest and "holiday.png" not in manifest


def test_a_run_from_before_manifests_loses_only_vaezoo_names(cli, run_copy):
    (run_copy / MANIFEST).unlink()
    add_user_files(run_copy)
    assert overwrite(cli, run_copy).code == 0
    assert_user_files_kept(run_copy)
    assert not (run_copy / "checkpoints" / "epoch-0002.safetensors").exists()


def test_a_manifest_naming_files_outside_the_run_deletes_none_of_them(cli, run_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (run_copy / "mine.txt").write_text("keep me too")
    (run_copy / MANIFEST).write_text(json.dumps({"files": ["../victim.txt", str(victim), "mine.txt",
                                                           "checkpoints/../../victim.txt", "config.json"]}))
    assert overwrite(cli, run_copy).code == 0
    assert victim.read_text() == "keep me" and (run_copy / "mine.txt").read_text() == "keep me too"


def test_a_damaged_manifest_stops_overwrite_before_any_deletion(refused, run_copy):
    (run_copy / MANIFEST).write_text("{not json")
    refused("train", *SMALL_RUN, "--max-steps", "1", "--out", str(run_copy), "--overwrite",
            words=(MANIFEST, "cannot tell which files it wrote"), untouched=run_copy)


@pytest.mark.parametrize("part", ["checkpoints", "config.json", "model.safetensors",
                                  "checkpoints/epoch-0001.safetensors"])
def test_a_run_folder_whose_parts_are_links_is_refused(refused, run_copy, tmp_path, part):
    outside = tmp_path / "outside"
    source = run_copy / part
    shutil.move(source, outside)
    (outside / "precious.safetensors").write_bytes(b"elsewhere") if outside.is_dir() else None
    source.symlink_to(outside)
    before = snapshot(tmp_path)
    refused("train", *SMALL_RUN, "--max-steps", "1", "--out", str(run_copy), "--overwrite",
            words=(str(source), "symbolic link"))
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=(str(source), "symbolic link"))
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_folder_that_holds_no_run(refused, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "samples.png").write_bytes(b"a photo")
    (folder / "config.json").write_text('{"theme": "dark"}')
    refused("train", *SMALL_RUN, "--max-steps", "1", "--out", str(folder), "--overwrite",
            words=("holds files but no vaezoo run",), untouched=folder)


def test_a_run_finished_while_this_one_waited_is_not_replaced(cli, monkeypatch, small_run, tmp_path):
    """A second train paused between its checks and taking the lock (Ctrl-Z is enough): whatever finished in the
    folder meanwhile is seen under the lock."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    flock = fcntl.flock

    def other_run_finishes_first(fd, operation):
        if not out.joinpath("model.safetensors").exists():
            shutil.copytree(small_run, out, dirs_exist_ok=True)
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", other_run_finishes_first)
    result = cli("train", *SMALL_RUN, "--max-steps", "1", "--out", str(out))
    assert result.code == 2 and "already holds files" in result.err
    monkeypatch.undo()
    assert_same_results(out, small_run)


def test_keep_checkpoints_keeps_the_newest_and_never_a_users_file(cli, tmp_path, small_run):
    run = tmp_path / "run"
    run.joinpath("checkpoints").mkdir(parents=True)
    result = cli("train", *SMALL_RUN, "--out", str(run), "--keep-checkpoints", "1")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0002.safetensors"]
    assert_same_results(run, small_run)  # retention changes nothing else
    (run / "checkpoints" / "mine.safetensors").write_bytes(b"mine")
    result = cli("train", "--resume", str(run), "--epochs", "4", "--keep-checkpoints", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch-0003.safetensors", "epoch-0004.safetensors", "mine.safetensors"]
    manifest = json.loads((run / MANIFEST).read_text())["files"]
    assert [n for n in manifest if n.startswith("checkpoints/")] == [
        "checkpoints/epoch-0003.safetensors", "checkpoints/epoch-0004.safetensors"]


def test_keep_checkpoints_must_keep_one(cli, tmp_path):
    result = cli("train", *SMALL_RUN, "--out", str(tmp_path / "run"), "--keep-checkpoints", "0")
    assert result.code == 2 and "--keep-checkpoints" in result.err


def test_superseded_mid_epoch_checkpoints_go_a_users_file_stays(cli, mid_epoch_run, small_run, tmp_path):
    run = Path(shutil.copytree(mid_epoch_run, tmp_path / "run"))
    add_user_files(run)
    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert_user_files_kept(run)
    assert not (run / "checkpoints" / "step-00000003.safetensors").exists()
    assert_same_results(run, small_run)


def test_temporaries_of_a_killed_write_are_removed_on_resume_others_kept(cli, run_copy):
    leftover = run_copy / "checkpoints" / ".epoch-0003.safetensors.00112233aabb.vaezoo-tmp"
    leftover.write_bytes(b"half written")
    add_user_files(run_copy)
    assert cli("train", "--resume", str(run_copy), "--device", "cpu").code == 0
    assert not leftover.exists()
    assert_user_files_kept(run_copy)

