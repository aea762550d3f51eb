"""`vaezoo explore`'s API: every picture checked against the model computed here, every bad request refused."""

from __future__ import annotations

import io
import json
import math
import shutil
import socket
import sys
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from vaezoo_plugins.datasets.synthetic import N_TEST

import vaezoo
from vaezoo.data import as_float

SIDE, PAD = 32, 2  # image side and the grid padding of torchvision's save_image


def tiles(png_bytes: bytes, rows: int, cols: int) -> torch.Tensor:
    """[rows, cols, 32, 32] in [0, 1]: the images of a PNG grid, read back."""
    pixels = torch.from_numpy(np.asarray(Image.open(io.BytesIO(png_bytes)))[..., 0].copy()).float() / 255
    assert pixels.shape == (PAD + rows * (SIDE + PAD), PAD + cols * (SIDE + PAD))
    return torch.stack([torch.stack([pixels[PAD + r * (SIDE + PAD):][:SIDE, PAD + c * (SIDE + PAD):][:, :SIDE]
                                     for c in range(cols)]) for r in range(rows)])


def single(png_bytes: bytes) -> torch.Tensor:
    """A one-image PNG (no padding) as [32, 32] in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(png_bytes)))[..., 0].copy()).float() / 255


def close(picture: torch.Tensor, images: torch.Tensor) -> bool:
    """Equal up to the PNG's 8-bit rounding."""
    return picture.shape == images.shape and bool((picture - images).abs().max() <= 0.5 / 255 + 1e-6)


@pytest.fixture(scope="module")
def model(small_run):
    return vaezoo.load(small_run)


@pytest.fixture(scope="module")
def test_images(synthetic):
    return as_float(synthetic.test)


def make_client(sources, **kwargs):
    from starlette.testclient import TestClient

    from vaezoo.explore.server import explore_app

    return TestClient(explore_app(sources, device="cpu"), **kwargs)


@pytest.fixture(scope="module")
def client(small_run, tmp_path_factory):
    """Two runs side by side: the small run, and a copy whose metrics.jsonl is gone."""
    bare = tmp_path_factory.mktemp("bare") / "run"
    shutil.copytree(small_run, bare)
    (bare / "metrics.jsonl").unlink()
    return make_client([small_run, bare])


def test_runs_are_described_side_by_side(client, model, test_images, small_run):
    runs = client.get("/api/runs").json()
    assert [r["run"] for r in runs] == [0, 1]
    first = runs[0]
    assert (first["source"], first["variant"], first["dataset"]) == (str(small_run), "conv-fashion", "synthetic")
    assert first["test_images"] == N_TEST and first["input_shape"] == [1, 32, 32] and first["samplers"] == ["prior"]
    last = json.loads((small_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert first["epochs"] == 2 and first["test_neg_elbo"] == pytest.approx(last["test"]["neg_elbo"])
    # Slider half ranges: at least the prior's +-3, widened to every test code, rounded up to 0.1.
    widest = model.representation(test_images).abs().amax(0)
    assert first["code_limits"] == [math.ceil(max(3.0, w) * 10) / 10 for w in widest.tolist()]
    assert runs[1]["epochs"] == 0 and runs[1]["test_neg_elbo"] is None


def test_code_is_the_models_representation(client, model, test_images):
    code = client.get("/api/runs/0/code", params={"image": 7}).json()["code"]
    assert code == pytest.approx(model.representation(test_images[7:8])[0].tolist(), abs=1e-6)


def test_a_checkpoint_is_explored_as_the_model_at_its_epoch(small_run, test_images):
    checkpoint = small_run / "checkpoints" / "epoch-0001.safetensors"
    client = make_client([checkpoint])
    run = client.get("/api/runs").json()[0]
    assert run["source"] == str(checkpoint) and run["epochs"] == 0  # no metrics.jsonl beside a file
    code = client.get("/api/runs/0/code", params={"image": 0}).json()["code"]
    expected = vaezoo.load(checkpoint).representation(test_images[:1])[0]
    assert code == pytest.approx(expected.tolist(), abs=1e-6)
    assert code != pytest.approx(vaezoo.load(small_run).representation(test_images[:1])[0].tolist(), abs=1e-6)


def test_decoded_image_is_the_models_decoding_of_the_code(client, model):
    z = torch.tensor([[0.5, -1.25, 3.0, 0.0, 2.0, -3.0, 0.1, 0.0, 1.0, -0.5]])
    response = client.get("/api/runs/1/decode.png", params={"z": ",".join(map(str, z[0].tolist()))})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert close(single(response.content), model.decode_representation(z)[0, 0])
    shifted = client.get("/api/runs/1/decode.png", params={"z": "0,0,0,0,0,0,0,0,0,0"}).content
    assert not close(single(shifted), model.decode_representation(z)[0, 0])


def test_interpolation_runs_from_one_test_image_to_the_other(client, model, test_images):
    response = client.get("/api/runs/0/interpolation.png", params={"a": 3, "b": 11, "steps": 5})
    row = tiles(response.content, 1, 7)[0]
    assert close(row[0], test_images[3, 0]) and close(row[-1], test_images[11, 0])
    za, zb = model.representation(test_images[[3, 11]])
    for k, t in enumerate([0, 0.25, 0.5, 0.75, 1]):
        assert close(row[k + 1], model.decode_representation(((1 - t) * za + t * zb)[None])[0, 0]), t


def test_samples_are_the_priors_and_repeat_for_a_seed(client, model):
    torch.manual_seed(99)
    before = torch.rand(3)
    first = client.get("/api/runs/0/samples.png", params={"sampler": "prior", "n": 9, "seed": 4}).content
    torch.manual_seed(99)
    assert torch.equal(torch.rand(3), before)  # the caller's random state is left alone
    torch.manual_seed(4)
    expected = model.sample(9)[:, 0]
    assert close(tiles(first, 3, 3).reshape(9, SIDE, SIDE), expected)
    assert client.get("/api/runs/0/samples.png", params={"n": 9, "seed": 4}).content == first
    assert client.get("/api/runs/0/samples.png", params={"n": 9, "seed": 5}).content != first


def test_reconstructions_sit_under_their_test_images(client, model, test_images):
    grid = tiles(client.get("/api/runs/0/reconstructions.png", params={"start": 250, "n": 6}).content, 2, 6)
    assert close(grid[0], test_images[250:256, 0])
    assert close(grid[1], model.reconstruct(test_images[250:256])[:, 0])


def test_test_image(client, test_images):
    assert close(single(client.get("/api/runs/1/image.png", params={"index": 255}).content), test_images[255, 0])


def test_loss_curves_follow_metrics_jsonl(client, small_run):
    records = [json.loads(line) for line in (small_run / "metrics.jsonl").read_text().splitlines()]
    curves = client.get("/api/runs/0/loss").json()
    assert curves["epochs"] == [1, 2]
    assert curves["series"]["test neg_elbo"] == [r["test"]["neg_elbo"] for r in records]
    assert curves["series"]["train loss"] == [r["train"]["loss"] for r in records]
    assert "train kl_per_dim" not in curves["series"]  # lists are not curves
    assert client.get("/api/runs/1/loss").json() == {"epochs": [], "series": {}}


def test_odd_metrics_become_gaps_not_errors():
    from vaezoo.explore.views import loss_series

    records = [{"epoch": 1, "test": {"neg_elbo": 5.0}}, "not a record", {"epoch": 2, "test": {"neg_elbo": float("nan")}},
               {"test": {"neg_elbo": "x", "kl": 1.5}, "train": [1]}]
    assert loss_series(records) == {"epochs": [1, 2, 3],
                                    "series": {"test neg_elbo": [5.0, None, None], "test kl": [None, None, 1.5]}}


Z10 = ",".join(["0"] * 10)


@pytest.mark.parametrize("path, params, status, words", [
    ("/api/runs/2/loss", {}, 404, ("unknown run '2'", "0 to 1")),
    ("/api/runs/-1/loss", {}, 404, ("unknown run '-1'",)),
    ("/api/runs/first/code", {"image": 0}, 404, ("unknown run 'first'",)),
    ("/api/runs/0/nothing", {}, 404, ("Not Found",)),
    ("/api/nothing", {}, 404, ("Not Found",)),
    ("/api/runs", {"x": 1}, 400, ("unknown parameter x",)),
    ("/api/runs/0/code", {}, 400, ("parameter image is required",)),
    ("/api/runs/0/code", {"image": N_TEST}, 400, ("image must be from 0 to 255", str(N_TEST))),
    ("/api/runs/0/code", {"image": "1.5"}, 400, ("image must be an integer",)),
    ("/api/runs/0/code", {"image": 1, "imag": 2}, 400, ("unknown parameter imag", "takes image")),
    ("/api/runs/0/decode.png", {}, 400, ("parameter z is required", "10")),
    ("/api/runs/0/decode.png", {"z": "0,0"}, 400, ("must have 10 values", "got 2")),
    ("/api/runs/0/decode.png", {"z": "0,0,0,0,0,0,0,0,0,3.01"}, 400, ("dimension 9 must be from -3 to 3",)),
    ("/api/runs/0/decode.png", {"z": "nan,0,0,0,0,0,0,0,0,0"}, 400, ("dimension 0",)),
    ("/api/runs/0/decode.png", {"z": "inf,0,0,0,0,0,0,0,0,0"}, 400, ("dimension 0",)),
    ("/api/runs/0/decode.png", {"z": "a,0,0,0,0,0,0,0,0,0"}, 400, ("comma-separated numbers",)),
    ("/api/runs/0/samples.png", {"n": 0}, 400, ("n must be from 1 to 64",)),
    ("/api/runs/0/samples.png", {"n": 10**6}, 400, ("n must be from 1 to 64",)),
    ("/api/runs/0/samples.png", {"seed": -1}, 400, ("seed must be from 0",)),
    ("/api/runs/0/samples.png", {"sampler": "gmm"}, 400, ("sampler must be one of prior", "'gmm'")),
    ("/api/runs/0/interpolation.png", {"a": 0}, 400, ("parameter b is required",)),
    ("/api/runs/0/interpolation.png", {"a": 0, "b": 1, "steps": 17}, 400, ("steps must be from 2 to 16",)),
    ("/api/runs/0/reconstructions.png", {"start": 250, "n": 7}, 400, ("n must be from 1 to 6",)),
    ("/api/runs/0/image.png", {"index": 99999999999999999999}, 400, ("index must be from 0 to 255",)),
])
def test_bad_requests_get_a_json_error_with_a_4xx_status(client, path, params, status, words):
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert "Traceback" not in response.text
    for word in words:
        assert word in error, (word, error)


def test_only_get_is_allowed(client):
    response = client.post("/api/runs/0/decode.png", params={"z": Z10})
    assert response.status_code == 405 and "Method Not Allowed" in response.json()["error"]


def test_a_model_without_a_flat_code_gets_no_sliders_and_says_why(small_run, model, monkeypatch):
    from vaezoo.errors import UsageError

    def no_code(self, x):
        raise UsageError("a codebook model has no flat code")

    # Like a codebook model: no flat code, but reconstructions by a path of its own.
    structure, flat = type(model), type(model).representation
    monkeypatch.setattr(structure, "reconstruct", lambda self, x: self.decode_representation(flat(self, x)))
    monkeypatch.setattr(structure, "representation", no_code)
    client = make_client([small_run])
    run = client.get("/api/runs").json()[0]
    assert run["code_limits"] is None and run["no_code_reason"] == "a codebook model has no flat code"
    for path, params in (("code", {"image": 0}), ("decode.png", {"z": Z10}), ("interpolation.png", {"a": 0, "b": 1})):
        response = client.get(f"/api/runs/0/{path}", params=params)
        assert response.status_code == 422
        assert "no flat code to slide or interpolate" in response.json()["error"]
    assert client.get("/api/runs/0/samples.png").status_code == 200
    assert client.get("/api/runs/0/reconstructions.png").status_code == 200


def test_a_bug_is_a_json_500_without_details(small_run, model, monkeypatch):
    def broken(self, n):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(model), "sample", broken)
    response = make_client([small_run], raise_server_exceptions=False).get("/api/runs/0/samples.png")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError); see the server's log"}


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "vaezoo explore" in page.text
    for name in ("explore.js", "explore.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../views.py").status_code == 404


def test_uvicorn_serves_the_app_on_loopback(small_run):
    from tests.browser import serving
    from vaezoo.explore.server import explore_app

    with serving(explore_app([small_run], device="cpu")) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/runs/0/code?image=0") as response:
            assert len(json.load(response)["code"]) == 10


def test_missing_extra_is_one_line(refused, small_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)
    refused("explore", str(small_run), words=("vaezoo[explore]", "starlette"), code=2)


def test_bad_model_is_one_line_before_serving(refused, tmp_path):
    refused("explore", str(tmp_path / "missing"), "--port", "0", words=("does not exist",))


def test_taken_port_is_one_line(refused, small_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        refused("explore", str(small_run), "--port", str(port), words=("cannot listen on 127.0.0.1", str(port)))
