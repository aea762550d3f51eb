"""Every variant of the registry on colour 64x64 images and on vectors: it trains 50 steps, or it
refuses before training with one line that names the shape it was given."""

from __future__ import annotations

import math

import pytest
import torch

from vaezoo.data import ImageData
from vaezoo.errors import VaezooError
from vaezoo.registry import get_registry
from vaezoo.storage.runs import RunDir
from vaezoo.training.loop import TrainSetup, train
from vaezoo.variant import Recipe

STEPS, BATCH = 50, 16
VARIANTS = sorted(get_registry().names("variant"))
SMALL = {"pseudo_inputs": 20, "disc_hidden": 32, "k": 3, "latent_dim": 4, "mlp_width": 32}  # where a variant has them


def images(shape: tuple[int, int, int], n: int, seed: int) -> torch.Tensor:
    """n uint8 images with structure: a random smooth field per channel, upsampled from 4x4."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, shape[0], 4, 4, generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=shape[1:], mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8)


def vectors(n: int, seed: int) -> torch.Tensor:
    """n float vectors of 12 values in [0, 1] on a 2-d manifold, shaped [n, 1, 1, 12]."""
    t = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))
    basis = torch.linspace(0, math.pi, 12)
    return (0.5 + 0.25 * torch.sin(t[:, :1] * 6 + basis) * t[:, 1:]).view(n, 1, 1, 12)


def labels(n: int, seed: int) -> torch.Tensor:
    """n class labels of 10 classes, so that conditional variants train too."""
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


DATASETS = {
    "colour-64": lambda: ImageData("colour-64", images((3, 64, 64), 160, 0), images((3, 64, 64), 32, 1),
                                   labels(160, 0), labels(32, 1)),
    "vectors": lambda: ImageData("vectors", vectors(160, 0), vectors(32, 1), labels(160, 0), labels(32, 1)),
}
PARTS = {"own parts": {}, "mlp parts": {"encoder": "mlp", "decoder": "mlp"}}


def trains_or_refuses(variant: str, dataset: str, parts: dict, folder, options: dict | None = None) -> str:
    spec = get_registry().variant(variant)
    if spec.parent_needs:
        pytest.skip(f"{variant} is a second stage: it trains on a finished run")
    data = DATASETS[dataset]()
    options = {"batch_size": BATCH, "epochs": 100, "lr": 1e-3, **SMALL, **(options or {})}
    from vaezoo.variant import Recipe

    try:
        schema = Recipe.of(spec, get_registry(), parts).schema
        hp = schema.resolve({k: v for k, v in options.items() if k in schema})
        records = train(TrainSetup(spec, hp, data, torch.device("cpu"), max_steps=STEPS, parts=parts),
                        RunDir.create(folder / "run"), get_registry())
    except VaezooError as exc:
        message = str(exc)
        assert "\n" not in message, message
        return f"refused: {message}"
    test = records[-1]["test"]
    assert records[-1]["step"] == STEPS and math.isfinite(test.get("neg_elbo", test["recon"]))
    return "trained"


def dense(variant: str) -> tuple[dict, dict]:
    """(parts, options) putting the mlp parts in the variant's place: an encoder with heads of its own
    (a vMF, a point code, a label beside the features) keeps them and takes the mlp trunk."""
    schema = Recipe.of(get_registry().variant(variant), get_registry()).schema
    if "base_encoder" in schema:
        return {"decoder": "mlp"}, {"base_encoder": "mlp"}
    return PARTS["mlp parts"], {}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_on_vectors(variant, tmp_path, one_thread):
    outcome = trains_or_refuses(variant, "vectors", {}, tmp_path)
    if outcome != "trained":
        assert "1x12" in outcome  # it names the shape it was given


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_with_dense_parts(variant, tmp_path, one_thread):
    """Dense parts take any shape: every variant trains with them, except those whose structure has no
    flat encoder to swap (nvae's cells, vq-vae's grid), which refuse the swap itself in one line."""
    parts, options = dense(variant)
    outcome = trains_or_refuses(variant, "vectors", parts, tmp_path, options)
    if variant in ("nvae", "vq-vae"):
        assert outcome.startswith("refused: --part encoder=mlp"), outcome
    else:
        assert outcome == "trained", outcome


def test_a_swap_the_structure_cannot_read_is_refused_with_a_hint(tmp_path):
    outcome = trains_or_refuses("s-vae", "vectors", {"encoder": "point"}, tmp_path)
    assert "encoder 'point' is x -> a point z, but variant s-vae's encoder 'vmf' is x -> q(z|x)" in outcome
    assert "use -o base_encoder=point" in outcome
    outcome = trains_or_refuses("s-vae", "vectors", {"decoder": "mlp"}, tmp_path, {"base_encoder": "point"})
    assert "base_encoder 'point' builds on a base encoder itself" in outcome


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_on_colour_64x64(variant, tmp_path, one_thread):
    outcome = trains_or_refuses(variant, "colour-64", {}, tmp_path)
    if outcome != "trained":
        assert "64x64" in outcome  # it names the shape it was given
