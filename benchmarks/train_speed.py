"""Training speed of `vaezoo train conv-fashion --beta 1` against two plain PyTorch scripts.

Contenders, run interleaved for several rounds on the real FashionMNIST files (medians reported):
  faithful  the original design as a plain script: torchvision.datasets.FashionMNIST with per-item
            PIL Pad + ToTensor through a DataLoader (on a GPU each batch is moved there with
            .to(device, non_blocking=True)), the encoder trunk run once for mu and once for
            log-variance, lambda * sum(theta^2) added to the loss, torch.optim.Adam;
  fixed     the same script with the obvious fixes: trunk once, the dataset as one float tensor
            (on the device);
  vaezoo    vaezoo.training.loop.train, exactly what `vaezoo train` runs.
All use the same model, objective, optimiser semantics, batch size and device. Images/s count the
training loop with its data handling, not the per-epoch test evaluation; on a GPU the clocks are
read after a device sync, and each contender runs a few untimed steps first.

    python benchmarks/train_speed.py                      # batch 64, 3 rounds of one epoch each, CPU
    python benchmarks/train_speed.py --batch-size 256
    python benchmarks/train_speed.py --device cuda        # the same on the GPU (auto: CUDA if present)
    python benchmarks/train_speed.py --steps 150          # partial epochs on a busy machine
    python benchmarks/train_speed.py --epochs 10 --compare-elbo   # test -ELBO, plain script vs vaezoo
    python benchmarks/train_speed.py --profile --threads 1        # where a step's time goes (CPU)
"""

from __future__ import annotations

import argparse
import gzip
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
from vaezoo_plugins.datasets.idx import FILES

from vaezoo.devices import resolve_device, synchronize
from vaezoo.errors import UsageError

DATA = Path("/usr/share/datasets/fashion-mnist")
CEILING = 6400  # images/s on the CPU: 19.4 MFLOP per image and step at ~125 GFLOP/s (2 cores, float32 matmul)
LAMBDA, LR, LATENT = 0.01, 1e-4, 10
WARM_UP_STEPS = 5  # untimed steps per contender before a GPU's rounds (context, kernels, cuDNN handles)


def torchvision_root(data: Path, into: Path) -> Path:
    """A root that torchvision.datasets.FashionMNIST reads without downloading: the IDX files of `data`,
    decompressed under FashionMNIST/raw/ with the names its _check_exists looks for."""
    raw = into / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in FILES.values() for name in pair):
        (raw / name).write_bytes(gzip.decompress((data / f"{name}.gz").read_bytes()))
    return into


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


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


def plain_data(kind: str, root: Path, device: torch.device):
    """What the script loads once: torchvision's FashionMNIST training set (the faithful script), or
    its images as one padded float tensor on `device`."""
    import torchvision.datasets
    import torchvision.transforms as T

    if kind == "faithful":
        return torchvision.datasets.FashionMNIST(str(root), train=True, download=False,
                                                 transform=T.Compose([T.Pad(2), T.ToTensor()]))
    images = torchvision.datasets.FashionMNIST(str(root), train=True, download=False).data
    return F.pad(images.unsqueeze(1).float() / 255, (2, 2, 2, 2)).to(device)


def plain_batches(dataset, batch_size: int, generator: torch.Generator):
    """One epoch of shuffled batches of images (labels dropped), the incomplete last one dropped."""
    if isinstance(dataset, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                             generator=generator)
        return (x for x, _labels in loader)
    order = torch.randperm(len(dataset), generator=generator).to(dataset.device)
    return (dataset[order[i:i + batch_size]] for i in range(0, len(dataset) - batch_size + 1, batch_size))


def sync(device: torch.device) -> None:
    """GPU work is asynchronous: wait for it before reading a clock (the plain script's own
    `vaezoo.devices.synchronize`, as a user's script would write it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_train(kind, root, batch_size, epochs, steps, seed, device):
    """Train the plain script on `device`; returns (images/s per epoch, the model)."""
    torch.manual_seed(seed)
    model = Model(trunk_twice=kind == "faithful").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    dataset = plain_data(kind, root, device)
    rates = []
    for _ in range(epochs):
        sync(device)
        started, seen = time.perf_counter(), 0
        for x in plain_batches(dataset, batch_size, generator):
            x = x.to(device, non_blocking=True)
            recon, kl = model.neg_elbo_terms(x)
            loss = recon.mean() + kl.mean() + LAMBDA * sum(p.pow(2).sum() for p in model.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(x)
            if steps and seen >= steps * batch_size:
                break
        sync(device)
        rates.append(seen / (time.perf_counter() - started))
    return rates, model


@torch.no_grad()
def plain_test_elbo(model, root, device):
    """Test negative ELBO per image, one sample of z per image (as vaezoo.evaluation.measures.elbo_terms)."""
    import torchvision.datasets

    images = torchvision.datasets.FashionMNIST(str(root), train=False, download=False).data
    test = F.pad(images.unsqueeze(1).float() / 255, (2, 2, 2, 2)).to(device)
    return float(sum(sum(t.sum() for t in model.neg_elbo_terms(x)) for x in test.split(1000))) / len(test)


# ---- vaezoo ----

def conv_fashion(**overrides):
    """The registry, the conv-fashion recipe and its hyperparameters with `overrides`."""
    from vaezoo.registry import get_registry

    registry = get_registry()
    spec = registry.variant("conv-fashion")
    return registry, spec, spec.schema.resolve(overrides)


def vaezoo_train(data_root, batch_size, epochs, steps, seed, device):
    """`vaezoo train conv-fashion --beta 1 --device DEVICE` in-process; returns (images/s per epoch, test -ELBO)."""
    from rich.console import Console
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    from vaezoo.storage.runs import RunDir
    from vaezoo.training.loop import TrainSetup, train

    registry, spec, hp = conv_fashion(beta=1.0, batch_size=batch_size, epochs=epochs)
    setup = TrainSetup(spec, hp, load_fashion_mnist(data_root), device, seed=seed,
                       max_steps=steps * epochs if steps else None)
    with tempfile.TemporaryDirectory() as tmp:
        records = train(setup, RunDir.create(Path(tmp) / "run"), registry, Console(quiet=True))
    return [r["images_per_s"] for r in records], records[-1]["test"]["neg_elbo"]


def evaluation_throughput(data_root, k, images, device):
    """Images/s on `device` of the test-set negative ELBO and of the K-sample importance-weighted bound,
    each run once untimed on one batch first."""
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    from vaezoo.data import ordered_batches
    from vaezoo.evaluation.measures import elbo_terms
    from vaezoo.model import build_model
    from vaezoo.model.bounds import importance_log_likelihood

    registry, spec, hp = conv_fashion()
    test = load_fashion_mnist(data_root).test[:images].to(device)
    model = build_model(spec, hp, tuple(test.shape[1:]), registry).eval().to(device)
    iw_batch = max(1, 10000 // k)

    @torch.no_grad()
    def importance_bound(images):
        for x in ordered_batches(images, iw_batch):
            importance_log_likelihood(model, x, k).sum().item()

    def rate(measure, warm_up: int) -> float:
        measure(test[:warm_up])
        synchronize(device)
        started = time.perf_counter()
        measure(test)
        synchronize(device)
        return len(test) / (time.perf_counter() - started)

    return rate(lambda images: elbo_terms(model, images), 1000), rate(importance_bound, iw_batch)


def profile(args) -> None:
    """torch.profiler tables of training steps on the CPU: the fixed script (before) and vaezoo's step (after)."""
    from torch.profiler import profile as torch_profile
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    from vaezoo.data import shuffled_batches
    from vaezoo.model import build_model, build_objective
    from vaezoo.training.loop import build_optimizers

    with torch_profile() as before:
        plain_train("fixed", args.torchvision_root, args.batch_size, 1, args.steps or 30, args.seed, args.device)
    registry, spec, hp = conv_fashion(batch_size=args.batch_size)
    model = build_model(spec, hp, (1, 32, 32), registry)
    objective = build_objective(model, registry)
    optimizer = build_optimizers(model, objective, hp)["model"]
    images = load_fashion_mnist(args.data).train
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


def run_one(name, args, steps):
    """Images/s of one epoch (or `steps` steps) of contender `name`."""
    if name in ("faithful", "fixed"):
        return plain_train(name, args.torchvision_root, args.batch_size, 1, steps, args.seed, args.device)[0][0]
    return vaezoo_train(args.data, args.batch_size, 1, steps, args.seed, args.device)[0][0]


def speed(args) -> None:
    print(f"torch {torch.__version__}, {device_name(args.device)}, {os.cpu_count()} CPUs, batch {args.batch_size}, "
          f"{'whole epochs' if not args.steps else f'{args.steps} steps'} per contender per round, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.device.type == "cuda":
        print(f"cuDNN {torch.backends.cudnn.version()}, TF32 convolutions {torch.backends.cudnn.allow_tf32}, "
              f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32} (as in `vaezoo train`)", flush=True)
        for name in CONTENDERS:
            run_one(name, args, WARM_UP_STEPS)
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for rnd in range(args.rounds):
        order = CONTENDERS if rnd % 2 == 0 else CONTENDERS[::-1]  # no contender always goes first
        for name in order:
            threads = torch.get_num_threads()
            rates[name].append(run_one(name, args, args.steps))
            torch.set_num_threads(threads)
            print(f"round {rnd + 1}  {name:14s} {rates[name][-1]:8,.0f} images/s", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    med = {name: statistics.median(v) for name, v in rates.items()}
    print("\nmedian images/s: " + ", ".join(f"{n} {v:,.0f}" for n, v in med.items()))
    print(f"vaezoo / faithful = {med['vaezoo'] / med['faithful']:.2f}x   vaezoo / fixed = {med['vaezoo'] / med['fixed']:.2f}x")
    if args.device.type == "cpu":
        print(f"fraction of the {CEILING:,} images/s ceiling: vaezoo {med['vaezoo'] / CEILING:.1%}, "
              f"fixed {med['fixed'] / CEILING:.1%}, faithful {med['faithful'] / CEILING:.1%}")
    if args.eval_k:
        elbo_rate, iw_rate = evaluation_throughput(args.data, args.eval_k, args.eval_images, args.device)
        print(f"evaluation ({args.eval_images} test images, {device_name(args.device)}): negative ELBO "
              f"{elbo_rate:,.0f} images/s, importance-sampled K={args.eval_k} {iw_rate:,.0f} images/s")


def elbo_run(name, args):
    """Train contender `name` for --epochs; returns (images/s per epoch, test negative ELBO per image)."""
    if name == "vaezoo":
        return vaezoo_train(args.data, args.batch_size, args.epochs, args.steps, args.seed, args.device)
    rates, model = plain_train(name, args.torchvision_root, args.batch_size, args.epochs, args.steps, args.seed,
                               args.device)
    return rates, plain_test_elbo(model, args.torchvision_root, args.device)


def _one_thread_job(job):
    name, args = job
    torch.set_num_threads(1)  # the two runs share the machine; threads do not change the maths
    return name, elbo_run(name, args)


def compare_elbo(args) -> None:
    """Both trainings, then their test negative ELBO per image: on the CPU side by side (one thread
    each), on a GPU one after the other."""
    names = (args.reference, "vaezoo")
    if args.device.type == "cpu":
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            results = dict(pool.map(_one_thread_job, [(name, args) for name in names]))
        where = "one thread"
    else:
        results = {name: elbo_run(name, args) for name in names}
        where = device_name(args.device)
    ref, ours = results[args.reference][1], results["vaezoo"][1]
    for name, (rates, elbo) in results.items():
        print(f"{name:9s} test negative ELBO {elbo:8.2f} nats/image after {args.epochs} epochs "
              f"({statistics.median(rates):,.0f} images/s, {where})")
    print(f"relative difference (vaezoo - {args.reference}) / {args.reference} = {(ours - ref) / ref:+.2%}")
    if not math.isfinite(ours) or abs(ours - ref) > 0.01 * abs(ref):
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the FashionMNIST IDX .gz files")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="where every contender trains (auto: CUDA if present)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="steps per contender per round (0 = whole epochs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-k", type=int, default=100, help="importance samples for the evaluation figure (0 = skip)")
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--compare-elbo", action="store_true", help="train --epochs with the reference and vaezoo, compare test -ELBO")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of --steps CPU steps instead")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for --profile (0 = default)")
    parser.add_argument("--reference", choices=("faithful", "fixed"), default="faithful")
    args = parser.parse_args()
    try:
        args.device = resolve_device(args.device)
    except UsageError as exc:
        parser.error(str(exc))
    if args.profile and args.device.type != "cpu":
        parser.error("--profile tables CPU time; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.torchvision_root = torchvision_root(args.data, Path(tmp))
        if args.profile:
            profile(args)
        else:
            compare_elbo(args) if args.compare_elbo else speed(args)


if __name__ == "__main__":
    main()
