"""The standard FID (Heusel et al. 2017): pytorch-fid's Inception network and Frechet distance, with the
network's weights read from a local safetensors file, never unpickled and never downloaded.

The classifier-feature distance of sample_quality is the one the bench always reports; this is the
number comparable with published FIDs, computed only where a user has the FID Inception weights
(pytorch-fid's pt_inception-2015-12-05 file, converted once to safetensors: docs/benchmark.md) and
`pip install 'vaezoo[fid]'`. Grey images are repeated to three channels; pytorch-fid resizes to 299.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from vaezoo.errors import NotApplicable, UsageError
from vaezoo.extras import require

#: where vaezoo looks for the FID Inception weights (a safetensors file).
WEIGHTS_ENV = "VAEZOO_INCEPTION_WEIGHTS"
#: the pool3 features every published FID uses.
POOL3 = 2048


def weights_path() -> Path:
    """The configured weights file, or NotApplicable saying how to configure one."""
    configured = os.environ.get(WEIGHTS_ENV)
    if not configured:
        raise NotApplicable(f"no FID Inception weights on this machine (set {WEIGHTS_ENV} to a safetensors file)")
    path = Path(configured)
    if not path.is_file():
        raise NotApplicable(f"{WEIGHTS_ENV}={configured}: no such file")
    return path


def inception(path: Path, dims: int = POOL3) -> nn.Module:
    """pytorch-fid's FID Inception (features of width `dims`: 64, 192, 768 or 2048) with the weights in `path`."""
    fid = require("pytorch_fid.inception", feature="the Inception FID", extra="fid", package="pytorch-fid")
    tensors = _read(path)
    try:
        with _weights_from(fid, tensors):
            return fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    except RuntimeError as exc:  # load_state_dict's missing, unexpected or mis-shaped tensors
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UsageError(f"{path}: not the FID Inception weights ({first})") from None


def _read(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file (any writer's), or one line saying why not."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from vaezoo import footprint

    footprint.check_fits(f"reading {path}", path.stat().st_size, torch.device("cpu"))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None


@contextmanager
def _weights_from(fid, tensors: dict[str, Tensor]):
    """pytorch-fid fetches its weights by URL; within, it gets `tensors` instead."""
    original = fid.load_state_dict_from_url
    fid.load_state_dict_from_url = lambda url, **_: tensors
    try:
        yield
    finally:
        fid.load_state_dict_from_url = original


@torch.no_grad()
def inception_features(network: nn.Module, images: Tensor, batch_size: int = 100) -> Tensor:
    """[N, dims] features of images in [0, 1] (grey or RGB), average-pooled where the block is spatial."""
    device = next(network.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, torch.float32)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        features = network(batch)[0]
        out.append(torch.nn.functional.adaptive_avg_pool2d(features, 1).flatten(1).cpu())
    return torch.cat(out)


def frechet(real_features: Tensor, sample_features: Tensor) -> float:
    """pytorch-fid's Frechet distance between Gaussians fitted to two sets of features (float64, scipy's sqrtm)."""
    import numpy as np

    fid = require("pytorch_fid.fid_score", feature="the Inception FID", extra="fid", package="pytorch-fid")
    a, b = real_features.double().numpy(), sample_features.double().numpy()
    with warnings.catch_warnings():  # pytorch-fid 0.3 passes scipy's deprecated sqrtm(disp=False)
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(fid.calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))
