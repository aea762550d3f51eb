"""What the explore page shows of one model: codes, decoded images, samples, interpolations, loss curves.

Only the stable model API is used (`sample`, `reconstruct`, `representation`,
`decode_representation`, `input_shape`), so any structure the registry can build is shown; a model
without a flat code (its `representation` raises a `VaezooError`) gets no sliders or interpolation,
and the page says why.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.utils import save_image

from vaezoo.api import _images, _open
from vaezoo.data import as_float
from vaezoo.errors import NotApplicable, VaezooError
from vaezoo.evaluation import pictures
from vaezoo.registry import Registry
from vaezoo.storage.runs import RunDir

#: Test images whose codes set the slider ranges.
CODE_SAMPLE = 1000

#: Ways to draw new images; a post-hoc sampler becomes one more entry.
SAMPLERS: dict[str, Callable[[nn.Module, int], Tensor]] = {"prior": lambda model, n: model.sample(n)}


def png(images: Tensor, per_row: int) -> bytes:
    """A grid of images in [0, 1] as PNG bytes, padded in white like the run folder's pictures."""
    buffer = io.BytesIO()
    save_image(images.float().cpu(), buffer, format="png", nrow=per_row, pad_value=1.0)
    return buffer.getvalue()


def _finite(value: Any) -> float | None:
    """A metric value JSON can carry: a finite number, else None (a gap in the curve)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def loss_series(records: Sequence[Any]) -> dict[str, Any]:
    """Every scalar metric of metrics.jsonl per epoch, named "split key" (e.g. "test neg_elbo").

    The file is the user's: records that are not objects are left out, and values that are not finite
    numbers become gaps (None).
    """
    records = [r for r in records if isinstance(r, dict)]
    series: dict[str, list[float | None]] = {}
    for i, record in enumerate(records):
        for split in ("train", "test"):
            values = record.get(split)
            for key, value in values.items() if isinstance(values, dict) else ():
                if not isinstance(value, (list, dict)):
                    series.setdefault(f"{split} {key}", [None] * len(records))[i] = _finite(value)
    epochs = [_finite(r.get("epoch")) for r in records]
    return {"epochs": [i + 1 if e is None else e for i, e in enumerate(epochs)], "series": series}


class ExploredModel:
    """One model as the page sees it: loaded once, then asked for pictures and codes."""

    def __init__(self, source: Path, *, device: str, data_dir: str | Path | None, registry: Registry):
        artifact = _open(source, device, registry)
        self.source = source
        self.variant = artifact.spec.name
        self.dataset = artifact.metadata["dataset"]
        self.model = artifact.vae()
        self.device = next(self.model.parameters()).device
        self.test = _images(artifact, "test", data_dir, registry)
        self.curves = loss_series(RunDir(artifact.path).read_metrics() if artifact.path.is_dir() else [])
        self.lock = threading.Lock()  # one torch call at a time: the server's threads share the model
        self.limits, self.no_code_reason = self._code_limits()

    def _code_limits(self) -> tuple[list[float] | None, str | None]:
        """Per code dimension, the slider's half range: the prior's traversal range, widened to cover every
        code of the first test images. None with the model's reason when it has no flat code."""
        try:
            codes = self.model.representation(self._batch(range(min(CODE_SAMPLE, len(self.test)))))
        except VaezooError as exc:
            return None, str(exc)
        half = torch.clamp(codes.abs().amax(0), min=pictures.TRAVERSAL_RANGE)
        return [math.ceil(v * 10) / 10 for v in half.tolist()], None

    def _batch(self, indices: Sequence[int] | range) -> Tensor:
        return as_float(self.test[list(indices)]).to(self.device)

    def need_code(self) -> list[float]:
        if self.limits is None:
            raise NotApplicable(f"{self.source} has no flat code to slide or interpolate: {self.no_code_reason}")
        return self.limits

    def describe(self) -> dict[str, Any]:
        """What the page needs to lay out this run's column."""
        final = self.curves["series"].get("test neg_elbo", [None])[-1]
        return {
            "source": str(self.source), "variant": self.variant, "dataset": self.dataset,
            "input_shape": list(self.model.input_shape), "test_images": len(self.test),
            "samplers": list(SAMPLERS), "code_limits": self.limits, "no_code_reason": self.no_code_reason,
            "epochs": len(self.curves["epochs"]), "test_neg_elbo": final,
        }

    def code(self, index: int) -> list[float]:
        """The representation of test image `index`."""
        self.need_code()
        with self.lock:
            return self.model.representation(self._batch([index]))[0].tolist()

    def decode(self, code: Sequence[float]) -> bytes:
        self.need_code()
        z = torch.tensor([list(code)], dtype=torch.float32, device=self.device)
        with self.lock:
            return png(self.model.decode_representation(z), 1)

    def interpolation(self, a: int, b: int, steps: int) -> bytes:
        """Test image a, `steps` images decoded along the straight line between the two codes, test image b."""
        self.need_code()
        x = self._batch([a, b])
        with self.lock:
            ends = self.model.representation(x)
            t = torch.linspace(0, 1, steps, device=self.device)[:, None]
            decoded = self.model.decode_representation((1 - t) * ends[0] + t * ends[1])
        return png(torch.cat([x[:1], decoded.to(x.dtype), x[1:]]), steps + 2)

    def samples(self, sampler: str, n: int, seed: int) -> bytes:
        """`n` images from `sampler`, the same for the same seed (the caller's random state is left as it was)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with self.lock, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            images = SAMPLERS[sampler](self.model, n)
        return png(images, max(1, round(math.sqrt(n))))

    def reconstructions(self, start: int, n: int) -> bytes:
        """Test images start .. start + n - 1 above their reconstructions."""
        buffer = io.BytesIO()
        with self.lock:
            pictures.reconstructions(self.model, self.test[start:start + n].to(self.device), buffer, n=n, per_row=n)
        return buffer.getvalue()

    def image(self, index: int) -> bytes:
        return png(self._batch([index]), 1)

