"""Hugging Face Hub: export --format hf with a model card, hf://OWNER/NAME through a local cache in
offline mode (no network), untrusted downloads, and vaezoo push against a mocked HfApi."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

huggingface_hub = pytest.importorskip("huggingface_hub", reason="pip install 'vaezoo[hub]'")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def evaluated_run(small_run, tmp_path_factory) -> Path:
    """The small run with an eval.json beside its model."""
    from vaezoo.api import evaluate

    run = Path(shutil.copytree(small_run, tmp_path_factory.mktemp("hub") / "run"))
    evaluate(run, importance_samples=2, device="cpu")
    return run


def test_export_hf_writes_a_model_card_with_the_hub_header(evaluated_run, tmp_path, cli):
    result = cli("export", str(evaluated_run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert result.code == 0, result.err
    folder = tmp_path / "hf"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = huggingface_hub.ModelCard.load(folder / "README.md")
    assert card.data.library_name == "vaezoo" and card.data.datasets == ["synthetic"]
    assert {"vaezoo", "vae", "conv-fashion"} <= set(card.data.tags)
    evaluation = json.loads((evaluated_run / "eval.json").read_text())
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["nll"].metric_value == evaluation["nll"] and results["nll"].dataset_split == "test"
    assert results["neg_elbo"].metric_value == evaluation["neg_elbo"]
    assert f'vaezoo.load("{folder}")' in card.text
    import vaezoo

    assert torch.equal(vaezoo.load(folder).decode_representation(torch.zeros(2, 10)),
                       vaezoo.load(evaluated_run).decode_representation(torch.zeros(2, 10)))


def test_export_hf_without_eval_json_has_no_metrics(small_run, tmp_path, cli):
    assert cli("export", str(small_run), "--format", "hf", "--out", str(tmp_path / "hf")).code == 0
    assert huggingface_hub.ModelCard.load(tmp_path / "hf" / "README.md").data.eval_results is None


def test_export_hf_refusals_are_one_line(small_run, tmp_path, refused, monkeypatch):
    refused("export", str(small_run), "--format", "hf", "--out", str(tmp_path / "m.safetensors"),
            words=("--format hf writes a folder",), code=2)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "huggingface_hub" else real(name, *a))
    refused("export", str(small_run), "--format", "hf", "--out", str(tmp_path / "hf"),
            words=("--format hf needs the huggingface_hub package: pip install 'vaezoo[hub]'",), code=2)
    assert not (tmp_path / "hf").exists()


def populate_cache(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main") -> Path:
    """Lay files out as huggingface_hub's cache does (blobs by hash, a snapshot per commit, refs)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).unlink(missing_ok=True)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, evaluated_run):
    """HF_HOME in tmp, offline mode on, and the small run exported into the cache as owner/tiny-vae."""
    from vaezoo.api import export

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = export(evaluated_run, tmp_path / "export", fmt="hf")
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors", "README.md")}
    populate_cache(cache, "owner/tiny-vae", files)
    monkeypatch.chdir(tmp_path)
    return cache


def test_load_from_the_hub_cache_offline(offline_hub, evaluated_run):
    import vaezoo

    z = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    reference = vaezoo.load(evaluated_run).decode_representation(z)
    assert torch.equal(vaezoo.load("hf://owner/tiny-vae").decode_representation(z), reference)
    assert torch.equal(vaezoo.load("hf://owner/tiny-vae@main").decode_representation(z), reference)


def test_every_model_command_takes_a_hub_model(offline_hub, tmp_path, cli):
    result = cli("evaluate", "hf://owner/tiny-vae", "-k", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "tiny-vae.eval.json").read_text())["split"] == "test"  # not inside the cache
    assert cli("sample", "hf://owner/tiny-vae", "--out", str(tmp_path / "s.png"), "--device", "cpu").code == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    result = cli("export", "hf://owner/tiny-vae")
    assert result.code == 0 and (tmp_path / "conv-fashion-tiny-vae.safetensors").exists(), result.err


@pytest.mark.parametrize("source, words", [
    ("hf://owner/missing", ("hf://owner/missing is not in the local Hugging Face cache", "HF_HUB_OFFLINE=1")),
    ("hf://owner", ("is not a Hub model", "hf://OWNER/NAME")),
    ("hf://owner/../etc", ("is not a Hub model",)),
])
def test_hub_problems_are_one_line(offline_hub, refused, source, words):
    refused("sample", source, "--out", "x.png", words=words)


def test_a_damaged_download_is_refused_like_any_file(offline_hub, refused):
    good = (offline_hub / "models--owner--tiny-vae" / "snapshots" / COMMIT / "model.safetensors").read_bytes()
    tampered = bytearray(good)
    tampered[-10:] = bytes(b ^ 0xFF for b in tampered[-10:])  # a tensor's bytes changed after export
    populate_cache(offline_hub, "owner/bad-vae", {"model.safetensors": bytes(tampered)})
    refused("sample", "hf://owner/bad-vae", "--out", "x.png", words=("is corrupt", "content_hash"))
    assert not Path("x.png").exists()


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: records what would be uploaded, touches no network."""

    calls: list = []

    def __init__(self, token=None, **kwargs):
        FakeHfApi.calls.append(("init", token))

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        FakeHfApi.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        FakeHfApi.uploaded = Path(shutil.copytree(folder_path, FakeHfApi.destination))
        FakeHfApi.calls.append(("upload_folder", repo_id, commit_message))


def test_push_uploads_the_export_with_its_card(evaluated_run, tmp_path, cli, monkeypatch):
    FakeHfApi.calls, FakeHfApi.destination = [], tmp_path / "uploaded"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    result = cli("push", str(evaluated_run), "owner/tiny-vae", "--private")
    assert result.code == 0, result.err
    assert "pushed to https://huggingface.co/owner/tiny-vae" in result.out
    assert FakeHfApi.calls[:2] == [("init", "hf_test_token"), ("create_repo", "owner/tiny-vae", True, True)]
    assert FakeHfApi.calls[2][0] == "upload_folder" and "tiny-vae" in FakeHfApi.calls[2][2]
    uploaded = FakeHfApi.uploaded
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert 'vaezoo.load("hf://owner/tiny-vae")' in (uploaded / "README.md").read_text()
    import vaezoo

    assert vaezoo.load(uploaded).input_shape == (1, 32, 32)


def test_push_without_a_token_is_one_line(evaluated_run, refused, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    FakeHfApi.calls = []
    refused("push", str(evaluated_run), "owner/tiny-vae", words=("needs a Hugging Face token", "hf auth login"))
    assert FakeHfApi.calls == []
    refused("push", str(evaluated_run), "not a repo", words=("is not a Hub model",), code=2)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    refused("push", str(evaluated_run), "owner/tiny-vae@v2", words=("without @REVISION",), code=2)
    assert FakeHfApi.calls == []
