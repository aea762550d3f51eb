"""Run by tests/test_vq_vae_stages.py under torchrun: two training batches through a VQ codebook.

Every process sees its own half of the same union batches and draws its own random positions.
Each writes OUT/{ema,restarts}-RANK.safetensors: its codebook's state after the two batches, with
EMA and restarts off, and with EMA and a restart whenever a code sat out one batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from vaezoo_plugins.vq_vae.codebook import Codebook

from vaezoo.training.distributed import launch

CODES, DIM, PER_RANK = 6, 3, 5


def union_batches() -> tuple[torch.Tensor, torch.Tensor]:
    """The starting vectors [CODES, DIM] and two union batches [2, 2 * PER_RANK, DIM], the same everywhere."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(CODES, DIM, generator=generator), torch.randn(2, 2 * PER_RANK, DIM, generator=generator)


def codebook(restart_after: int) -> Codebook:
    start, _ = union_batches()
    book = Codebook(CODES, DIM, commitment=0.25, ema=True, decay=0.9, epsilon=1e-3, restart_after=restart_after)
    with torch.no_grad():
        book.vectors.copy_(start)
        book.ema_sum.copy_(start)
    return book.train()


def grid(rows: torch.Tensor) -> torch.Tensor:
    return rows.T[None, :, None, :].contiguous()


def main(out: Path) -> None:
    world, _ = launch(torch.device("cpu"))
    _, batches = union_batches()
    with world.joined():
        for name, restart_after in (("ema", 0), ("restarts", 1)):
            torch.manual_seed(100 + world.rank)  # each process draws different positions
            book = codebook(restart_after)
            for batch in batches:
                book(grid(batch[world.rank * PER_RANK:(world.rank + 1) * PER_RANK]))
            save_file(book.state_dict(), str(out / f"{name}-{world.rank}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
