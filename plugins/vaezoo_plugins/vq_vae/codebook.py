"""The codebook of a vector-quantised latent (van den Oord et al. 2017): nearest-code assignment,
straight-through gradients, the codebook and commitment losses, EMA updates and dead-code restarts.

Losses are per image, like the rest of vaezoo's terms: squared distances summed over the code
dimensions and grid positions of an image, averaged over the batch (with a 16-dimensional code on
an 8x8 grid that is 1,024 numbers per image, as many as the pixels whose log-likelihood the
reconstruction term sums, so the weights keep the balance of Sonnet's all-means version).

Everything that changes the codebook outside the optimiser (EMA updates, restarts, the idle
counters) happens in the training forward, under no_grad and in train mode only, on module buffers:
checkpoints hold it with the model and a resumed run continues bit for bit. Under torchrun the
statistics these updates read are summed over the processes, and restarted vectors are rank 0's, so
every process keeps the same codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Quantised:
    """One batch through the codebook."""

    codes: Tensor  # [B, h, w] int64: each position's nearest code
    straight_through: Tensor  # [B, D, h, w]: the code vectors forward; backward, dL/dz_q passes to z_e unchanged
    losses: dict[str, Tensor]  # "commitment" (beta-weighted) and, without EMA, "codebook"
    stats: dict[str, Tensor]  # "codebook_perplexity", "codebook_usage" and, training, "codes_restarted"


def code_usage(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(perplexity, usage) of code counts [K]: exp of the entropy of the code frequencies (K when
    every code is used equally, 1 when one code takes everything) and the fraction of codes used."""
    frequencies = counts.to(torch.float32) / counts.sum().clamp(min=1)
    return torch.exp(-torch.special.xlogy(frequencies, frequencies).sum()), (counts > 0).to(torch.float32).mean()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class Codebook(nn.Module):
    """K code vectors of size D; `forward(z_e [B, D, h, w])` quantises every grid position.

    With `ema`, the vectors are buffers moved by exponential moving averages of the encoder outputs
    assigned to them (the paper's appendix, with Sonnet's Laplace smoothing of the counts):
        N_k <- decay N_k + (1 - decay) n_k,   m_k <- decay m_k + (1 - decay) sum_{i: code i = k} z_e,i,
        e_k = m_k / N~_k,   N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j.
    The averages start as one pseudo-observation of each initial vector (N_k = 1, m_k = e_k), so an
    unused code keeps its place until it is restarted: Sonnet's zero-debiased averages send an unused
    code to the origin, and the common PyTorch ports (N = 0 and m = e, not debiased) divide it by
    about eps, far out of reach. Without `ema` the vectors are parameters trained by the codebook loss.

    Dead-code restarts (`restart_after` > 0): a code that no grid position of the last
    `restart_after` training batches chose is re-initialised to the encoder output at a random
    position of the current batch (distinct positions, drawn uniformly without replacement, before
    the batch is quantised); with EMA its averages restart as one observation of that vector. The
    optimiser state of a restarted vector (no EMA) is kept. Every code starts idle, so the first
    training batch places the whole codebook on its encoder outputs (a data-dependent start; the
    initial vectors, uniform in +-1/K, matter only with restarts off).
    """

    def __init__(self, size: int, dim: int, *, commitment: float, ema: bool, decay: float, epsilon: float,
                 restart_after: int):
        super().__init__()
        self.size, self.dim = size, dim
        self.commitment, self.ema, self.decay, self.epsilon = commitment, ema, decay, epsilon
        self.restart_after = restart_after
        vectors = torch.empty(size, dim).uniform_(-1.0 / size, 1.0 / size)
        if ema:
            self.register_buffer("vectors", vectors)
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", vectors.clone())
        else:
            self.vectors = nn.Parameter(vectors)
        # Every code starts idle: the first training batch restarts them all onto its encoder outputs.
        self.register_buffer("idle_steps", torch.full((size,), restart_after, dtype=torch.int64))

    @torch.no_grad()
    def nearest(self, flat: Tensor) -> Tensor:
        """[N] the index of the code vector nearest to each row of `flat` [N, D] (the first on a tie);
        in float32 even under autocast, where a half-precision product would blur near ties."""
        with torch.autocast(flat.device.type, enabled=False):
            flat, vectors = flat.float(), self.vectors.detach().float()
            distances = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ vectors.T + vectors.pow(2).sum(1)
        return distances.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """The code vectors of a code grid [B, h, w], as [B, D, h, w]."""
        return F.embedding(codes, self.vectors).permute(0, 3, 1, 2)

    @torch.no_grad()
    def encode(self, z_e: Tensor) -> Tensor:
        """[B, h, w] the nearest codes of encoder outputs [B, D, h, w]."""
        batch, _, height, width = z_e.shape
        return self.nearest(z_e.permute(0, 2, 3, 1).reshape(-1, self.dim)).view(batch, height, width)

    def forward(self, z_e: Tensor) -> Quantised:
        batch, _, height, width = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.dim)
        stats: dict[str, Tensor] = {}
        if self.training and self.restart_after:
            stats["codes_restarted"] = self._restart_dead(flat.detach())
        codes = self.nearest(flat.detach())
        chosen = F.embedding(codes, self.vectors)  # [N, D]; carries the codebook's gradient
        losses = {"commitment": self.commitment * _per_image(flat - chosen.detach(), batch)}
        if not self.ema:
            losses["codebook"] = _per_image(chosen - flat.detach(), batch)
        counts = torch.bincount(codes, minlength=self.size)
        perplexity, usage = code_usage(counts)
        stats.update(codebook_perplexity=perplexity, codebook_usage=usage)
        if self.training:
            self._update(flat.detach(), codes, counts)
        # Exact in the forward (z_q + 0), identity to z_e in the backward.
        straight = chosen.detach() + (flat - flat.detach())
        grid = straight.view(batch, height, width, self.dim).permute(0, 3, 1, 2)
        return Quantised(codes.view(batch, height, width), grid, losses, stats)

    @torch.no_grad()
    def _update(self, flat: Tensor, codes: Tensor, counts: Tensor) -> None:
        """The idle counters and, with EMA, the moving averages and vectors, from one training batch."""
        dtype = self.vectors.dtype
        counts, sums = counts.to(dtype), None
        if self.ema:
            with torch.autocast(flat.device.type, enabled=False):  # the averages keep the codebook's precision
                sums = F.one_hot(codes, self.size).to(dtype).T @ flat.to(dtype)
        if _distributed():
            dist.all_reduce(counts)
            if sums is not None:
                dist.all_reduce(sums)
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        if sums is None:
            return
        self.ema_count.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (total + self.size * self.epsilon) * total
        self.vectors.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor) -> Tensor:
        """Move every code idle for `restart_after` batches onto an encoder output of this batch;
        returns how many moved. The r-th dead code (by index) takes the r-th of the positions drawn;
        with fewer positions than dead codes, the rest wait. No host sync: every step draws."""
        positions = flat.shape[0]
        pick = torch.randperm(positions, device=flat.device)[:self.size]
        dead = self.idle_steps >= self.restart_after
        rank = dead.cumsum(0) - 1
        dead &= rank < pick.shape[0]
        candidates = flat[pick[rank.clamp(0, pick.shape[0] - 1)]]
        if _distributed():
            dist.broadcast(candidates, src=0)
        self.vectors.copy_(torch.where(dead[:, None], candidates, self.vectors))
        if self.ema:
            self.ema_count.masked_fill_(dead, 1.0)
            self.ema_sum.copy_(torch.where(dead[:, None], candidates, self.ema_sum))
        self.idle_steps.masked_fill_(dead, 0)
        return dead.sum().to(torch.float32)


def _per_image(difference: Tensor, batch: int) -> Tensor:
    """Squared norm of `difference` [B * positions, D] summed per image, averaged over the batch."""
    return difference.pow(2).sum() / batch
