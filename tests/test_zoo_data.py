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


DATASETS = {
    "colour-64": lambda: ImageData("colour-64", images((3, 64, 64), 160, 0), images((3, 64, 64), 32, 1)),
    "vectors": lambda: ImageData("vectors", vectors(160, 0), vectors(32, 1)),
}
PARTS = {"own parts": {}, "mlp parts": {"encoder": "mlp", "decoder": "mlp"}}


def trains_or_refuses(variant: str, dataset: str, parts: dict, folder) -> str:
    spec = get_registry().variant(variant)
    if spec.parent_needs:
        pytest.skip(f"{variant} is a second stage: it trains on a finished run")
    data = DATASETS[dataset]()
    options = {"batch_size": BATCH, "epochs": 100, "lr": 1e-3, **{k: v for k, v in SMALL.items()}}
    from vaezoo.variant import Recipe

    schema = Recipe.of(spec, get_registry(), parts).schema
    hp = schema.resolve({k: v for k, v in options.items() if k in schema})
    try:
        records = train(TrainSetup(spec, hp, data, torch.device("cpu"), max_steps=STEPS, parts=parts),
                        RunDir.create(folder / "run"), get_registry())
    except VaezooError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert "64x64" in message or "1x12" in message, message  # it names the shape it was given
        return f"refused: {message}"
    assert records[-1]["step"] == STEPS and math.isfinite(records[-1]["test"]["neg_elbo"])
    return "trained"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("parts", sorted(PARTS))
def test_every_variant_on_vectors(variant, parts, tmp_path, one_thread):
    outcome = trains_or_refuses(variant, "vectors", PARTS[parts], tmp_path)
    if parts == "mlp parts":
        assert outcome == "trained"  # dense parts take any shape: nothing in the zoo should refuse them


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_on_colour_64x64(variant, tmp_path, one_thread):
    trains_or_refuses(variant, "colour-64", {}, tmp_path)
