"""Data-parallel training under torchrun: one process per device, gradients averaged by PyTorch DDP.

torchrun starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK. A `World` turns them into
this process's device and backend (NCCL for CUDA, gloo for the CPU), joins the process group with a
timeout on every collective (a dead or stuck process ends the job instead of hanging it), wraps the
trainable modules in DDP, shards the data, adds metric sums over processes, and tells who writes
(rank 0 only). Outside torchrun the World is a single process and every method is the identity.
See docs/distributed.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vaezoo.errors import DistributedError, UsageError
from vaezoo.model.parts import Terms
from vaezoo.training import rng

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for every process it starts
DEFAULT_TIMEOUT_S = 300
LONGEST_TIMEOUT_S = 7 * 24 * 3600  # a week; beyond this a stuck job would never end (and timedelta overflows)


class TrainingStep(nn.Module):
    """The model and its objective as one module whose forward is one training forward.

    Objectives may call the model's submodules directly (model.encoder, ...); DDP averages the
    gradients of exactly the parameters used inside its wrapped module's forward, so the whole
    objective runs inside it, the objective's own modules (a discriminator) included.
    """

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, step: int) -> Terms:
        return self.objective(self.model, x, step)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of process `rank` at global step `step`: distinct per rank and step, stable across numpy versions."""
    return int(np.random.SeedSequence([seed % 2**64, rank, step]).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; a single process unless `backend` is set."""

    rank: int = 0
    size: int = 1
    backend: str | None = None  # "nccl" or "gloo" under torchrun
    cuda_index: int | None = None  # the GPU this process drives (NCCL)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def launched(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes the run folder and prints progress."""
        return self.rank == 0

    @property
    def part(self) -> tuple[int, int]:
        """(rank, size): which slice of every global batch this process trains on."""
        return self.rank, self.size

    def config(self, batch_size: int) -> dict[str, int]:
        """What config.json records: batch_size is per process, the global batch is all of them together."""
        return {"world_size": self.size, "global_batch_size": batch_size * self.size}

    @contextmanager
    def joined(self) -> Iterator[None]:
        """Member of the process group while inside; a collective that times out or loses a peer ends the job."""
        if not self.launched:
            yield
            return
        if self.cuda_index is not None:
            torch.cuda.set_device(self.cuda_index)
        lost = False
        try:
            dist.init_process_group(self.backend, timeout=timedelta(seconds=self.timeout_s))
            yield
            dist.barrier()  # leave together: tearing down while another process still works can abort it
        except RuntimeError as exc:
            lost = _lost_peer(exc)
            if not lost:
                raise
            raise DistributedError(
                f"process {self.rank} of {self.size} lost the others: one of them stopped (see its own message) "
                f"or did not answer for {self.timeout_s:g} s (--dist-timeout); {_first_line(exc)}") from None
        finally:
            if not lost and dist.is_initialized():  # a broken group may hang in teardown; the process ends anyway
                dist.destroy_process_group()

    def wrap(self, model: nn.Module, objective: nn.Module) -> nn.Module:
        """The module the loop calls as forward(x, step) -> Terms: DDP around model and objective under torchrun."""
        step = TrainingStep(model, objective)
        return DistributedDataParallel(step) if self.launched else step

    def seed_step(self, seed: int, step: int) -> None:
        """Under torchrun, reseed every generator from (seed, rank, step) before each step.

        The processes draw different noise, and a resumed run draws the same noise as the uninterrupted
        one without the checkpoint holding every process's generators.
        """
        if self.launched:
            rng.seed_all(step_seed(seed, self.rank, step))

    def shard(self, images: Tensor) -> Tensor:
        """Every size-th image from the rank-th (for evaluation: the shards cover every image once)."""
        return images[self.rank::self.size]

    def total(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each tensor summed over the processes, in one collective."""
        if not self.launched or not tensors:
            return dict(tensors)
        names = list(tensors)
        flat = torch.cat([tensors[name].detach().reshape(-1) for name in names])
        dist.all_reduce(flat)
        sizes = [tensors[name].numel() for name in names]
        return {name: part.reshape(tensors[name].shape) for name, part in zip(names, flat.split(sizes))}

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any (a collective under torchrun)."""
        if not self.launched:
            return flag
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        value = torch.tensor(int(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


LOST_PEER_WORDS = ("gloo", "nccl", "processgroup", "timeout", "timed out", "pair closure", "connection closed",
                   "connection reset")


def _lost_peer(exc: RuntimeError) -> bool:
    """A failed or timed-out collective: DDP's gradient all-reduce reports gloo's as a plain RuntimeError,
    sometimes with only the transport's words ("Application timeout caused pair closure")."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(word in text for word in LOST_PEER_WORDS)


def _first_line(exc: Exception) -> str:
    """The backend's own words, without the source-file tag gloo puts in front."""
    lines = str(exc).strip().splitlines()
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(exc).__name__


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"environment variable {name}={env[name]!r} is not a whole number") from None


def launch(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S,
           env: Mapping[str, str] = os.environ) -> tuple[World, torch.device]:
    """The World torchrun's environment describes, and this process's device (cuda:LOCAL_RANK on GPUs)."""
    if not (isinstance(timeout_s, (int, float)) and 1 <= timeout_s <= LONGEST_TIMEOUT_S):
        raise UsageError(f"--dist-timeout {timeout_s}: give seconds from 1 to {LONGEST_TIMEOUT_S:,}")
    present = [name for name in ENV if name in env]
    if not present:
        return World(timeout_s=timeout_s), device
    if len(present) < len(ENV):
        missing = ", ".join(name for name in ENV if name not in env)
        raise UsageError(f"{', '.join(present)} set but {missing} not: start distributed training with torchrun")
    rank, size, local_rank = (_env_int(env, name) for name in ENV)
    if not 0 <= rank < size:
        raise UsageError(f"RANK={rank} is not below WORLD_SIZE={size}")
    if device.type == "cpu":
        return World(rank, size, "gloo", timeout_s=timeout_s), device
    if device.type != "cuda":
        raise UsageError(f"--device {device} cannot train under torchrun; use cuda (NCCL) or cpu (gloo)")
    if device.index is not None:
        if int(env.get("LOCAL_WORLD_SIZE", "1")) > 1:
            raise UsageError(f"--device {device} would put every process of this node on one GPU; "
                             "use --device cuda: each process takes cuda:LOCAL_RANK")
    elif local_rank >= torch.cuda.device_count():
        raise UsageError(f"process LOCAL_RANK={local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                         "start at most that many processes per node (--nproc_per_node)")
    else:
        device = torch.device("cuda", local_rank)
    return World(rank, size, "nccl", device.index, timeout_s), device
