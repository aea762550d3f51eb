"""The model card (README.md) of a Hub export: the Hub's metadata header, then what the model is.

The header (library name, tags, dataset, and the metrics of eval.json when it exists) is written by
huggingface_hub's ModelCardData, so the Hub indexes it; the text says how to load the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vaezoo.errors import WeightsError
from vaezoo.extras import require
from vaezoo.storage.loading import Artifact

#: eval.json key -> (metric type, name shown on the Hub); nats per image unless stated.
METRICS = {
    "nll": ("nll", "-log p(x), importance-sampled (nats per image)"),
    "neg_elbo": ("neg_elbo", "negative ELBO (nats per image)"),
    "recon": ("reconstruction", "reconstruction -log p(x|z) (nats per image)"),
    "kl": ("kl", "KL(q(z|x) || p(z)) (nats per image)"),
    "mse": ("mse", "reconstruction MSE per pixel"),
    "active_units": ("active_units", "active latent units"),
}
TASK = "unconditional-image-generation"


def read_eval(path: Path, artifact: Artifact) -> dict[str, Any] | None:
    """eval.json's numbers when it exists and is about this variant (untrusted: only finite numbers kept)."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(result, dict) or result.get("variant") != artifact.spec.name:
        return None
    kept = {key: result[key] for key in METRICS if _number(result.get(key))}
    split, samples = result.get("split"), result.get("importance_samples")
    kept["split"] = split if isinstance(split, str) else None
    kept["importance_samples"] = samples if _number(samples) else None
    return kept


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def model_card(artifact: Artifact, plugin: str, evaluation: dict[str, Any] | None, load_as: str) -> str:
    """README.md for the folder; `load_as` is what to pass to vaezoo.load (hf://OWNER/NAME, or a path)."""
    hub = require("huggingface_hub", feature="--format hf", extra="hub")
    spec, dataset = artifact.spec, artifact.metadata["dataset"]
    results = [hub.EvalResult(task_type=TASK, dataset_type=dataset, dataset_name=dataset, metric_type=kind,
                              metric_value=evaluation[key], metric_name=name, dataset_split=evaluation["split"])
               for key, (kind, name) in METRICS.items() if evaluation and key in evaluation]
    data = hub.ModelCardData(library_name="vaezoo", pipeline_tag=TASK, datasets=[dataset], model_name=spec.name,
                             tags=["vaezoo", "vae", "variational-autoencoder", spec.name, "safetensors"],
                             eval_results=results or None)
    hparams = "\n".join(f"| `{name}` | {value} |" for name, value in artifact.hp.items())
    measured = "\n".join(f"| {name} | {evaluation[key]:.6g} |" for key, (_, name) in METRICS.items()
                         if evaluation and key in evaluation)
    text = f"""---
{data.to_yaml()}
---

# {spec.name}

A variational autoencoder trained on `{dataset}` with [vaezoo](https://pypi.org/project/vaezoo/), images
of shape {list(artifact.input_shape)}. {spec.description}.{f" Paper: {spec.paper}." if spec.paper else ""}

```python
import vaezoo

model = vaezoo.load("{load_as}")   # pip install 'vaezoo[hub]'
images = model.sample(16)
```

`model.safetensors` holds the weights and, in its metadata, everything vaezoo needs to rebuild the
model (variant, hyperparameters, input shape, content hash); `config.json` repeats it. Nothing is
pickled. The `{spec.name}` variant comes from the vaezoo plugin `{plugin}`.

## Hyperparameters

| name | value |
|---|---|
{hparams}
"""
    if measured:
        samples = evaluation.get("importance_samples")
        text += f"""
## Evaluation ({evaluation.get("split") or "held-out"} split{f", {samples} importance samples" if samples else ""})

| measure | value |
|---|---|
{measured}
"""
    hub.ModelCard(text)  # checks the header parses as the Hub will read it
    return text
