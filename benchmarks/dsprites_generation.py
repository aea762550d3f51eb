"""How long the procedural dSprites takes: drawing all 737,280 images, writing the cache, reading it back.

Each measurement runs in a fresh interpreter, as a training run would: the 3 GB of fresh memory
the kernel provides is part of what a user waits for. Wall and CPU time are printed (CPU time is
the steadier figure on a busy shared machine). The cache goes into a temporary folder, never into
~/.cache.

    python benchmarks/dsprites_generation.py [--threads N] [--repeats 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = {"draw": "draw all images", "write": "draw, bit-pack, hash and write the cache",
         "read": "read the cache (checksum, unpack)"}


def measure(step: str, folder: Path) -> None:
    """One step in this (fresh) process; prints its wall and CPU time."""
    import torch
    from vaezoo_plugins.datasets import dsprites
    from vaezoo_plugins.datasets.sprites import SIZES, render

    work = {"draw": lambda: render(*(range(n) for n in SIZES)),
            "write": lambda: dsprites.cached_procedural(folder), "read": lambda: dsprites.cached_procedural(folder)}
    wall, cpu = time.perf_counter(), time.process_time()
    images = work[step]()
    print(f"{STEPS[step]}: {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU "
          f"({len(images):,} images, {torch.get_num_threads()} threads)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        measure(args.step, args.folder)
        return
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        for step in ("draw", "write", "read"):
            for _ in range(1 if step == "write" else args.repeats):
                subprocess.run([sys.executable, __file__, "--step", step, "--folder", tmp, *threads], check=True)


if __name__ == "__main__":
    main()
