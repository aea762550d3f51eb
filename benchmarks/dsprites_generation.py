"""How long the procedural dSprites takes: drawing all 737,280 images, and reading them back from the cache.

Both clocks are printed: wall time, and the process's CPU time (which a busy shared machine
inflates less). Writes the cache into a temporary folder, never into ~/.cache.

    python benchmarks/dsprites_generation.py [--threads N] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from vaezoo_plugins.datasets import dsprites
from vaezoo_plugins.datasets.sprites import SIZES, render


def timed(label: str, work) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    print(f"{label}: {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU "
          f"({len(result):,} images)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} torch threads")
    for _ in range(args.repeats):
        timed("draw", lambda: render(*(range(n) for n in SIZES)))
    with tempfile.TemporaryDirectory() as tmp:
        timed("draw, pack and write the cache", lambda: dsprites.cached_procedural(Path(tmp)))
        for _ in range(args.repeats):
            timed("read the cache (checksum, unpack)", lambda: dsprites.cached_procedural(Path(tmp)))


if __name__ == "__main__":
    main()
