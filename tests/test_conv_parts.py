"""The conv encoder and decoder at every size they take: 64x64 is Burgess et al. 2018's network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from vaezoo_plugins.standard.networks import ConvDecoder, ConvEncoder

from vaezoo.errors import UsageError
from vaezoo.hparams import HParams
from vaezoo.model.parts import BuildContext


def parts(shape, latent_dim=10):
    ctx = BuildContext(HParams({"latent_dim": latent_dim}), shape)
    torch.manual_seed(0)
    return ConvEncoder(ctx), ConvDecoder(ctx)


def layer_list(module: nn.Module) -> list[tuple]:
    return [(type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) else (type(m).__name__, m.in_features, m.out_features)
            for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


def test_64x64_is_the_network_of_burgess_et_al_2018():
    """Appendix A.1: four 4x4 stride-2 convolutions of 32 channels, two dense layers of 256, the
    latent heads; the decoder the transpose. 502,005 parameters with 10 latents."""
    encoder, decoder = parts((1, 64, 64))
    conv = ("Conv2d", 32, 32, (4, 4), (2, 2), (1, 1))
    assert layer_list(encoder) == [("Conv2d", 1, 32, (4, 4), (2, 2), (1, 1)), conv, conv, conv,
                                   ("Linear", 512, 256), ("Linear", 256, 256), ("Linear", 256, 10), ("Linear", 256, 10)]
    deconv = ("ConvTranspose2d", 32, 32, (4, 4), (2, 2), (1, 1))
    assert layer_list(decoder) == [("Linear", 10, 256), ("Linear", 256, 256), ("Linear", 256, 512),
                                   deconv, deconv, deconv, ("ConvTranspose2d", 32, 1, (4, 4), (2, 2), (1, 1))]
    assert sum(p.numel() for p in encoder.parameters()) == 252_052
    assert sum(p.numel() for p in decoder.parameters()) == 249_953
    x = torch.rand(3, 1, 64, 64)
    q = encoder(x)
    assert q.mu.shape == (3, 10) and decoder(q.mu).shape == (3, 1, 64, 64)
    assert decoder(torch.randn(2, 3, 10)).shape == (2, 3, 1, 64, 64)


@pytest.mark.parametrize("shape, convs", [((1, 8, 8), 1), ((3, 16, 16), 2), ((3, 32, 32), 3), ((2, 128, 128), 5)])
def test_every_square_power_of_two_size_and_channel_count(shape, convs):
    encoder, decoder = parts(shape, latent_dim=3)
    assert sum(isinstance(m, nn.Conv2d) for m in encoder.modules()) == convs
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in decoder.modules()) == convs
    x = torch.rand(2, *shape)
    assert decoder(encoder(x).mu).shape == (2, *shape)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 48, 48), (1, 64, 32), (3, 4, 4), (1, 1, 1)])
def test_shapes_the_parts_cannot_take_are_one_error_naming_them(shape):
    for part in (ConvEncoder, ConvDecoder):
        with pytest.raises(UsageError, match=f"the dataset has {shape[0]}x{shape[1]}x{shape[2]}"):
            part(BuildContext(HParams({"latent_dim": 2}), shape))


def test_a_variant_trains_on_dsprites_sized_images_with_no_dsprites_variant():
    """The recipe is unchanged: the data shape alone picks the 64x64 network."""
    from vaezoo.model import build_model, build_objective
    from vaezoo.registry import get_registry

    registry = get_registry()
    spec = registry.variant("beta-tcvae")
    hp = spec.schema.defaults()
    model = build_model(spec, hp, (1, 64, 64), registry)
    objective = build_objective(model, registry, dataset_size=737_280, total_steps=10)
    x = (torch.rand(8, 1, 64, 64) > 0.9).float()
    terms = objective(model, x, 0)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and model.encoder.trunk[0].weight.grad is not None
