"""How long `vaezoo evaluate` takes on the full FashionMNIST test set with the default K.

The default number of importance samples is chosen so this takes about a minute on 2 CPU cores.
Speed does not depend on the weights, so without a RUN a one-step run is trained first.

    python benchmarks/evaluate_fashion.py [RUN_OR_FILE] [--k K] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import vaezoo
from vaezoo.api import DEFAULT_IMPORTANCE_SAMPLES

TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path)
    parser.add_argument("--k", type=int, default=DEFAULT_IMPORTANCE_SAMPLES)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or vaezoo.train("conv-fashion", max_steps=1, data_dir=args.data_dir, device="cpu",
                                             out=Path(tmp) / "run")
        started, cpu = time.perf_counter(), time.process_time()
        result = vaezoo.evaluate(source, importance_samples=args.k, data_dir=args.data_dir, device="cpu", save=False)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{result['images']:,} images, K = {args.k}, {torch.get_num_threads()} threads: "
          f"{wall:.1f} s wall ({cpu:.1f} s CPU), {result['images'] * args.k / wall:,.0f} importance samples/s; "
          f"target about {TARGET_SECONDS:.0f} s on 2 cores")


if __name__ == "__main__":
    main()
