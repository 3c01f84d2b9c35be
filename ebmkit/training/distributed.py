"""Data-parallel training on plain torch.distributed, launched by torchrun.

Each rank holds a full replica. Every rank draws the *global* batch of data and noise from
generators in the same state and keeps its own rows (`ebmkit.random.ShardedGenerator`), so N
processes together compute what one process with the whole batch computes: the gradient of the
global mean loss is the mean of the ranks' gradients, which `all_reduce_gradients` forms after
each backward pass.

Why not the DistributedDataParallel wrapper: EBM losses call the energy several times per
backward (positives, negatives, a gradient penalty through ``autograd.grad(create_graph=True)``),
samplers differentiate the energy with respect to their inputs, and a recipe steps up to three
optimizers on overlapping graphs. DDP's reducer expects one forward per backward and does not
support double backward; averaging gradients explicitly works for all of these, and samplers keep
calling the bare module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def global_batch_problem(batch_size: int, world_size: int) -> str | None:
    """Why ``train.batch_size`` (the global batch) cannot be split evenly over the processes, if it cannot."""
    if batch_size % world_size:
        return f"train.batch_size {batch_size} is the global batch; it must be divisible by the {world_size} processes"
    return None


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this object initialised the process group and tears it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> "Distributed":
        """The process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK):
        gloo on CPU, NCCL on CUDA. One process without torchrun is world size 1."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        owns = not dist.is_initialized()
        if owns:
            nccl = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
            if nccl:  # before any collective: NCCL's object broadcasts use the current device
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if nccl else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)

    def shard(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a batch every rank holds whole."""
        n = global_batch.shape[0] // self.world_size
        return global_batch[self.rank * n:(self.rank + 1) * n]

    def all_reduce_gradients(self, parameters) -> None:
        """Replace each gradient by its mean over ranks, in one flat buffer per dtype."""
        if not self.enabled:
            return
        for group in _by_dtype(p.grad for p in parameters if p.grad is not None):
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat /= self.world_size
            _unflatten_into(flat, group)

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each logged metric averaged over ranks (one all-reduce)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        flat = torch.stack([values[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(flat)
        return dict(zip(keys, flat / self.world_size))

    def minimum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise minimum over ranks."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.MIN)
        return values

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does each step."""
        if not self.enabled:
            return
        for group in _by_dtype(module.buffers()):
            flat = torch.cat([b.reshape(-1) for b in group])
            dist.broadcast(flat, 0)
            _unflatten_into(flat, group)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (same shape on each), stacked along a new first axis in rank order."""
        if not self.enabled:
            return tensor.unsqueeze(0)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def close(self, *, finished: bool) -> None:
        """Tear down the process group this object initialised. A finished run first waits for
        every rank: a rank that destroys gloo's group and exits while rank 0 still writes the last
        checkpoint can abort in gloo's teardown ("terminate called without an active exception").
        A failed rank does not wait, since its peers may be blocked in another collective."""
        if self.owns_group and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def _by_dtype(tensors) -> list[list[torch.Tensor]]:
    """Tensors grouped by dtype (and device), so each group travels as one flat buffer."""
    groups: dict = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return list(groups.values())


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
