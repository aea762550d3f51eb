"""Training speed of `vaezoo train conv-fashion --beta 1` against two plain PyTorch scripts.

Contenders, run interleaved for several rounds on the real FashionMNIST files (medians reported):
  faithful  the original design as a plain script: a torchvision-style Dataset with per-item PIL
            Pad + ToTensor through a DataLoader, the encoder trunk run once for mu and once for
            log-variance, lambda * sum(theta^2) added to the loss, torch.optim.Adam;
  fixed     the same script with the obvious fixes: trunk once, the dataset as one float tensor;
  vaezoo    vaezoo.training.train, exactly what `vaezoo train` runs.
All use the same model, objective, optimiser semantics and batch size. Images/s count the
training loop with its data handling, not the per-epoch test evaluation.

    python benchmarks/train_speed.py                      # batch 64, 3 rounds of one epoch each
    python benchmarks/train_speed.py --batch-size 256
    python benchmarks/train_speed.py --steps 150          # partial epochs on a busy machine
    python benchmarks/train_speed.py --epochs 10 --compare-elbo   # test -ELBO, plain script vs vaezoo
    python benchmarks/train_speed.py --profile --threads 1        # where a step's time goes
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo_plugins.datasets.idx import FILES, read_idx

DATA = Path("/usr/share/datasets/fashion-mnist")
CEILING = 6400  # images/s: 19.4 MFLOP per image and step at ~125 GFLOP/s (2 cores, float32 matmul)
LAMBDA, LR, LATENT = 0.01, 1e-4, 10


def load_arrays(root: Path) -> dict[str, torch.Tensor]:
    """The 28x28 uint8 images of each split, read from the IDX files."""
    return {split: read_idx(root / f"{images}.gz") for split, (images, _labels) in FILES.items()}


# ---- the plain script: nothing from vaezoo below this line but the numbers above ----

class Model(nn.Module):
    def __init__(self, trunk_twice: bool):
        super().__init__()
        self.trunk_twice = trunk_twice
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mu, self.logvar = nn.Linear(256, LATENT), nn.Linear(256, LATENT)
        self.dense = nn.Sequential(
            nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def neg_elbo_terms(self, x):
        """Per-image reconstruction and KL terms [B] of one reparameterised sample."""
        h = self.trunk(x)
        mu = self.mu(h)
        logvar = self.logvar(self.trunk(x) if self.trunk_twice else h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.deconv(self.dense(z).view(-1, 32, 4, 4))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1)
        return recon, kl


class PaddedImages(torch.utils.data.Dataset):
    """torchvision.datasets.FashionMNIST's item path: PIL image, then the transforms."""

    def __init__(self, images):
        import torchvision.transforms as T

        self.images = images
        self.transform = T.Compose([T.Pad(2), T.ToTensor()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i].numpy()))


def plain_data(kind: str, images: torch.Tensor):
    """What the script loads once: a torchvision-style Dataset, or one padded float tensor."""
    return PaddedImages(images) if kind == "faithful" else F.pad(images.unsqueeze(1).float() / 255, (2, 2, 2, 2))


def plain_batches(dataset, batch_size: int, generator: torch.Generator):
    """One epoch of shuffled batches, the incomplete last one dropped."""
    if isinstance(dataset, PaddedImages):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                           generator=generator)
    order = torch.randperm(len(dataset), generator=generator)
    return (dataset[order[i:i + batch_size]] for i in range(0, len(dataset) - batch_size + 1, batch_size))


def plain_train(kind, arrays, batch_size, epochs, steps, seed):
    """Train the plain script; returns (images/s per epoch, the model)."""
    torch.manual_seed(seed)
    model = Model(trunk_twice=kind == "faithful")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    dataset = plain_data(kind, arrays["train"])
    rates = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for x in plain_batches(dataset, batch_size, generator):
            recon, kl = model.neg_elbo_terms(x)
            loss = recon.mean() + kl.mean() + LAMBDA * sum(p.pow(2).sum() for p in model.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(x)
            if steps and seen >= steps * batch_size:
                break
        rates.append(seen / (time.perf_counter() - started))
    return rates, model


@torch.no_grad()
def plain_test_elbo(model, arrays):
    """Test negative ELBO per image, one sample of z per image (as vaezoo.evaluation.elbo_terms)."""
    test = F.pad(arrays["test"].unsqueeze(1).float() / 255, (2, 2, 2, 2))
    return float(sum(sum(t.sum() for t in model.neg_elbo_terms(x)) for x in test.split(1000))) / len(test)


# ---- vaezoo ----

def conv_fashion(**overrides):
    """The registry, the conv-fashion recipe and its hyperparameters with `overrides`."""
    from vaezoo.registry import get_registry

    registry = get_registry()
    spec = registry.variant("conv-fashion")
    return registry, spec, spec.schema.resolve(overrides)


def vaezoo_train(data_root, batch_size, epochs, steps, seed):
    """`vaezoo train conv-fashion --beta 1` in-process; returns (images/s per epoch, test -ELBO)."""
    from rich.console import Console

    from vaezoo.devices import resolve_device
    from vaezoo.runs import RunDir
    from vaezoo.training import TrainSetup, train
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    registry, spec, hp = conv_fashion(beta=1.0, batch_size=batch_size, epochs=epochs)
    setup = TrainSetup(spec, hp, load_fashion_mnist(data_root), resolve_device("cpu"), seed=seed,
                       max_steps=steps * epochs if steps else None)
    with tempfile.TemporaryDirectory() as tmp:
        records = train(setup, RunDir.create(Path(tmp) / "run"), registry, Console(quiet=True))
    return [r["images_per_s"] for r in records], records[-1]["test"]["neg_elbo"]


def evaluation_throughput(data_root, k, images):
    """Images/s of the test-set negative ELBO and of the K-sample importance-weighted bound."""
    from vaezoo.bounds import log_mean_exp, log_weights
    from vaezoo.data import ordered_batches
    from vaezoo.evaluation import elbo_terms
    from vaezoo.model import build_model
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    registry, spec, hp = conv_fashion()
    test = load_fashion_mnist(data_root).test[:images]
    model = build_model(spec, hp, tuple(test.shape[1:]), registry).eval()
    started = time.perf_counter()
    elbo_terms(model, test)
    elbo_rate = len(test) / (time.perf_counter() - started)
    started = time.perf_counter()
    with torch.no_grad():
        for x in ordered_batches(test, max(1, 10000 // k)):
            log_mean_exp(log_weights(model, x, k)).sum().item()
    return elbo_rate, len(test) / (time.perf_counter() - started)


def profile(args) -> None:
    """torch.profiler tables of training steps: the fixed script (before) and vaezoo's step (after)."""
    from torch.profiler import profile as torch_profile

    from vaezoo.data import shuffled_batches
    from vaezoo.model import build_model, build_objective
    from vaezoo.training import build_optimizers

    arrays = load_arrays(args.data)
    with torch_profile() as before:
        plain_train("fixed", arrays, args.batch_size, 1, args.steps or 30, args.seed)
    registry, spec, hp = conv_fashion(batch_size=args.batch_size)
    model = build_model(spec, hp, (1, 32, 32), registry)
    objective = build_objective(spec, hp, model, registry)
    optimizer = build_optimizers(model, objective, hp)["model"]
    images = F.pad(arrays["train"].unsqueeze(1), (2, 2, 2, 2))
    batches = shuffled_batches(images, args.batch_size, torch.Generator().manual_seed(args.seed))
    with torch_profile() as after:
        for step, x in zip(range(args.steps or 30), batches):
            terms = objective(model, x, step)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
    for title, prof in (("before (fixed script)", before), ("after (vaezoo step)", after)):
        print(f"\n{title}, {torch.get_num_threads()} threads")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=36))


CONTENDERS = ("faithful", "fixed", "vaezoo")


def run_one(name, args, arrays):
    if name in ("faithful", "fixed"):
        return plain_train(name, arrays, args.batch_size, 1, args.steps, args.seed)[0][0]
    return vaezoo_train(args.data, args.batch_size, 1, args.steps, args.seed)[0][0]


def speed(args) -> None:
    arrays = load_arrays(args.data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, batch {args.batch_size}, "
          f"{'whole epochs' if not args.steps else f'{args.steps} steps'} per contender per round, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for rnd in range(args.rounds):
        order = CONTENDERS if rnd % 2 == 0 else CONTENDERS[::-1]  # no contender always goes first
        for name in order:
            threads = torch.get_num_threads()
            rates[name].append(run_one(name, args, arrays))
            torch.set_num_threads(threads)
            print(f"round {rnd + 1}  {name:14s} {rates[name][-1]:8,.0f} images/s", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    med = {name: statistics.median(v) for name, v in rates.items()}
    print("\nmedian images/s: " + ", ".join(f"{n} {v:,.0f}" for n, v in med.items()))
    print(f"vaezoo / faithful = {med['vaezoo'] / med['faithful']:.2f}x   vaezoo / fixed = {med['vaezoo'] / med['fixed']:.2f}x")
    print(f"fraction of the {CEILING:,} images/s ceiling: vaezoo {med['vaezoo'] / CEILING:.1%}, "
          f"fixed {med['fixed'] / CEILING:.1%}, faithful {med['faithful'] / CEILING:.1%}")
    if args.eval_k:
        elbo_rate, iw_rate = evaluation_throughput(args.data, args.eval_k, args.eval_images)
        print(f"evaluation ({args.eval_images} test images): negative ELBO {elbo_rate:,.0f} images/s, "
              f"importance-sampled K={args.eval_k} {iw_rate:,.0f} images/s")


def _elbo_job(job):
    name, args = job
    torch.set_num_threads(1)  # the two runs share the machine; threads do not change the maths
    if name == "vaezoo":
        return name, vaezoo_train(args.data, args.batch_size, args.epochs, args.steps, args.seed)
    arrays = load_arrays(args.data)
    rates, model = plain_train(name, arrays, args.batch_size, args.epochs, args.steps, args.seed)
    return name, (rates, plain_test_elbo(model, arrays))


def compare_elbo(args) -> None:
    """Both trainings side by side (one thread each), then their test negative ELBO per image."""
    jobs = [(args.reference, args), ("vaezoo", args)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = dict(pool.map(_elbo_job, jobs))
    ref, ours = results[args.reference][1], results["vaezoo"][1]
    for name, (rates, elbo) in results.items():
        print(f"{name:9s} test negative ELBO {elbo:8.2f} nats/image after {args.epochs} epochs "
              f"({statistics.median(rates):,.0f} images/s on one thread)")
    print(f"relative difference (vaezoo - {args.reference}) / {args.reference} = {(ours - ref) / ref:+.2%}")
    if not math.isfinite(ours) or abs(ours - ref) > 0.01 * abs(ref):
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the FashionMNIST IDX .gz files")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="steps per contender per round (0 = whole epochs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-k", type=int, default=100, help="importance samples for the evaluation figure (0 = skip)")
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--compare-elbo", action="store_true", help="train --epochs with the reference and vaezoo, compare test -ELBO")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of --steps steps instead")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for --profile (0 = default)")
    parser.add_argument("--reference", choices=("faithful", "fixed"), default="faithful")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile(args)
    else:
        compare_elbo(args) if args.compare_elbo else speed(args)


if __name__ == "__main__":
    main()
