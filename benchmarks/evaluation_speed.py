"""Importance-sampled -log p(x) on the CPU against its ceiling, the model's own FLOPs at the machine's
matrix-multiply rate, both measured in this run.

For each variant (an untrained model: the speed does not depend on the weights):
  ceiling   N * K * F / R: F the FLOPs of one importance sample (counted with
            torch.utils.flop_counter on one draw of the model: the decoder, and a flow posterior's
            steps; the encoder runs once per image and is not counted), R the rate of 1024x1024
            float32 matrix products, best of five, measured before every timed contender; the
            shares use the best R of the run (what the machine can do), each round's line the R
            measured just before it
  plain     a straightforward estimate (vaezoo's before issue 19): encode, draw 4,096 codes at a
            time, decode them all, log p(x|z) + log p(z) - log q(z|x), logsumexp over every sample
            (for structures with an encoder, decoder, likelihood and prior: the single-latent one)
  vaezoo    vaezoo.model.bounds.importance_log_likelihood (the -log p(x) of `vaezoo evaluate`)
  evaluate  vaezoo.evaluation.measures.evaluate: everything `vaezoo evaluate` measures (ELBO terms,
            -log p(x), reconstructions, codes), against the same ceiling
Contenders run interleaved over rounds (the order reversed every other round); the medians and
spreads of the share of the ceiling are printed, by wall clock and by CPU time (the latter is what
to read on a machine shared with other jobs). The estimates of plain and vaezoo for one seed are
compared, as they must agree to float rounding.

    python benchmarks/evaluation_speed.py                          # conv-fashion and iaf-vae, 10,000 images, K = 100
    python benchmarks/evaluation_speed.py --images 500 --rounds 3  # a short run
    python benchmarks/evaluation_speed.py --variants conv-fashion --k 5000 --images 1000
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaezoo.data import as_float

DATA = Path("/usr/share/datasets/fashion-mnist")
MATMUL = 1024  # the side of the matrix products that give the machine's rate
PLAIN_SAMPLES_PER_PASS = 4096


def matmul_rate() -> tuple[float, float]:
    """(FLOP/s by wall clock, FLOP/s per CPU second) of 1024x1024 float32 products, best of five."""
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    a @ b
    wall = cpu = math.inf
    for _ in range(5):
        w, c = time.perf_counter(), time.process_time()
        a @ b
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    flops = 2 * MATMUL**3
    return flops / wall, flops / max(cpu, 1e-9)


def flops_per_sample(model, x: torch.Tensor, k: int) -> tuple[float, float]:
    """(FLOPs of one importance sample, FLOPs of one decoder forward per code), counted by torch."""
    with torch.no_grad():
        draw = model.importance_draw(x)  # encodes x: once per image, not per sample
        with FlopCounterMode(display=False) as per_draw:
            draw(k)
        codes = model.representation(x) if "flat-code" in model.capabilities else None
        decoder = None
        if codes is not None and hasattr(model, "decoder"):
            with FlopCounterMode(display=False) as per_decode:
                model.decoder(codes)
            decoder = per_decode.get_total_flops() / len(x)
    return per_draw.get_total_flops() / (k * len(x)), decoder


@torch.no_grad()
def plain_log_likelihood(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """[B] the straightforward estimate of log p(x), for a structure with encoder, decoder, likelihood
    and prior parts (the single-latent one): the whole draw decoded at once, every weight kept."""
    q, p = model.encoder(x), model.prior()
    chunk = max(1, PLAIN_SAMPLES_PER_PASS // x.shape[0])
    log_w = []
    for done in range(0, k, chunk):
        z = q.rsample((min(chunk, k - done),))
        log_w.append(model.likelihood.log_prob(x, model.decoder(z)) + p.log_prob(z) - q.log_prob(z))
    return torch.logsumexp(torch.cat(log_w), 0) - math.log(k)


def contenders(model, images: torch.Tensor, k: int, batch_size: int):
    from vaezoo.data import ordered_batches
    from vaezoo.evaluation.measures import evaluate
    from vaezoo.model.bounds import importance_log_likelihood

    def estimate(function):
        def run():
            return torch.cat([function(model, x, k) for x in ordered_batches(images, batch_size)])
        return run

    runs = {"vaezoo": estimate(importance_log_likelihood), "evaluate": lambda: evaluate(model, images, k, batch_size)}
    if all(hasattr(model, part) for part in ("encoder", "decoder", "likelihood", "prior")):  # single-latent
        runs = {"plain": estimate(plain_log_likelihood), **runs}
    return runs


def measure(variant: str, images: torch.Tensor, args) -> None:
    from vaezoo.model import build_model
    from vaezoo.registry import get_registry

    registry = get_registry()
    spec = registry.variant(variant)
    torch.manual_seed(args.seed)
    model = build_model(spec, spec.schema.resolve({}), tuple(images.shape[1:]), registry).eval()
    if "density" not in model.capabilities:
        print(f"\n{variant}: no density, so no importance-sampled -log p(x) to measure")
        return
    probe = as_float(images[:min(len(images), args.batch_size)])
    per_sample, decoder = flops_per_sample(model, probe, min(args.k, 8))
    total = len(images) * args.k * per_sample
    print(f"\n{variant}: {per_sample / 1e6:.2f} MFLOP per importance sample"
          + (f" (decoder {decoder / 1e6:.2f})" if decoder else "")
          + f"; {len(images):,} images x K = {args.k}: {total / 1e9:,.1f} GFLOP", flush=True)
    runs = contenders(model, images, args.k, args.batch_size)
    runs["vaezoo"]()  # warm-up: first calls of each kernel
    seconds: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in runs}
    rates = {"wall": [], "cpu": []}
    for rnd in range(args.rounds):
        for name in list(runs) if rnd % 2 == 0 else list(runs)[::-1]:
            for kind, rate in zip(("wall", "cpu"), matmul_rate()):
                rates[kind].append(rate)
            torch.manual_seed(args.seed)
            w, c = time.perf_counter(), time.process_time()
            runs[name]()
            seconds[name]["wall"].append(time.perf_counter() - w)
            seconds[name]["cpu"].append(time.process_time() - c)
            print(f"  round {rnd + 1} {name:9s} {seconds[name]['wall'][-1]:7.1f} s wall, "
                  f"{seconds[name]['cpu'][-1]:7.1f} s CPU; matmul just before {rates['wall'][-1] / 1e9:.0f} GFLOP/s: "
                  f"{total / rates['wall'][-1] / seconds[name]['wall'][-1]:6.1%} of that ceiling", flush=True)
    if "plain" in runs:
        torch.manual_seed(args.seed)
        plain = runs["plain"]()
        torch.manual_seed(args.seed)
        ours = runs["vaezoo"]()
        print(f"  same seed, plain against vaezoo: largest difference {float((plain - ours).abs().max()):.2e} nats "
              f"(mean -log p(x) {float(-ours.mean()):.4f})")
    best = {kind: max(values) for kind, values in rates.items()}  # the machine's rate: best of every measurement
    print(f"{variant:14s} ceiling {total / best['wall']:.1f} s (matmul {best['wall'] / 1e9:.0f} GFLOP/s, the best of "
          f"the run; {best['cpu'] / 1e9:.0f} GFLOP per CPU second)")
    for name, spent in seconds.items():
        wall, cpu = (sorted(total / best[kind] / t for t in spent[kind]) for kind in ("wall", "cpu"))
        print(f"{variant:14s} {name:9s} median {statistics.median(spent['wall']):7.1f} s; share of the ceiling: "
              f"wall {statistics.median(wall):6.1%} ({wall[0]:.1%}-{wall[-1]:.1%}), "
              f"CPU {statistics.median(cpu):6.1%} ({cpu[0]:.1%}-{cpu[-1]:.1%})")
    if "plain" in runs:
        ratio = statistics.median(seconds["plain"]["wall"]) / statistics.median(seconds["vaezoo"]["wall"])
        print(f"{variant:14s} vaezoo / plain speed-up {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["conv-fashion", "iaf-vae"])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the FashionMNIST IDX .gz files")
    parser.add_argument("--images", type=int, default=10_000, help="test images (10,000: the whole test set)")
    parser.add_argument("--k", type=int, default=100, help="importance samples per image")
    parser.add_argument("--batch-size", type=int, default=500, help="images per batch (vaezoo evaluate's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    images = load_fashion_mnist(args.data).test[:args.images]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; K = {args.k}, {len(images):,} images, batch {args.batch_size}")
    for variant in args.variants:
        measure(variant, images, args)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
