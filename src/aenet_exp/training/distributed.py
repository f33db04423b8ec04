"""Training in several processes (``distributed=ddp`` under torchrun): the process group, each
rank's share of a batch, and the sums all ranks agree on.

Every rank reads the same data and makes the same split, weights, normalisation and batch plan;
each builds and featurises only its share of every planned batch. Squared-error sums,
gradients, feature statistics and epoch errors are added over ranks, so every rank steps with
the gradient one process computes for the whole batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; one process is rank 0 of 1."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process records the run and writes its files (rank 0)."""
        return self.rank == 0

    def share(self, indices: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        """This rank's structures of ``indices``, in their order, as :func:`balanced_owners` assigns them.

        ``n_atoms`` ``(n_structures,)`` holds the atom count of every structure.
        """
        indices = np.asarray(indices)
        if self.size == 1:
            return indices
        return indices[balanced_owners(n_atoms[indices], self.size) == self.rank]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` added over ranks, in place (on the training device: CPU for gloo, CUDA for nccl)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Add each parameter's gradient over ranks, in one flat buffer.

        A parameter that no rank's share reached keeps ``None``, so the optimiser skips it as
        it does in one process; a rank with an empty share contributes zeros.
        """
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        reached = torch.tensor([p.grad is not None for p in parameters], dtype=grads[0].dtype, device=grads[0].device)
        flat = self.sum(torch.cat([g.reshape(-1) for g in grads] + [reached]))
        summed = flat[: -len(parameters)].split([p.numel() for p in parameters])
        for parameter, grad, count in zip(parameters, summed, flat[-len(parameters) :].tolist()):
            parameter.grad = grad.view_as(parameter) if count > 0 else None

    def broadcast(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (in place)."""
        if self.size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)


SINGLE = Ranks()


def balanced_owners(n_atoms: np.ndarray, size: int) -> np.ndarray:
    """The rank ``(n,)`` of each of ``n`` structures with ``n_atoms`` atoms: a deterministic greedy split.

    Structures taken by atom count, largest first (ties in their given order), each to the rank
    with the fewest atoms so far (ties to the lowest rank).
    """
    owners = np.empty(len(n_atoms), dtype=np.int64)
    load = np.zeros(size, dtype=np.int64)
    for i in np.argsort(-np.asarray(n_atoms), kind="stable"):
        owners[i] = rank = int(np.argmin(load))
        load[rank] += n_atoms[i]
    return owners


def launch_rank() -> int:
    """This process's rank as torchrun announces it (``RANK``); 0 when not started by torchrun."""
    return int(os.environ.get("RANK", "0"))


@contextmanager
def joined(enabled: bool, device: torch.device) -> Iterator[tuple[Ranks, torch.device]]:
    """torchrun's process group for the block (gloo on CPU, nccl on CUDA), destroyed after it.

    Yields this process's ranks and training device, ``cuda:LOCAL_RANK`` when ``device`` is CUDA.
    Not ``enabled``: one process on ``device``, no group.
    """
    if not enabled:
        yield SINGLE, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    # Imported before the group exists: torch.distributed.nn's functions take the default group as a default
    # argument when first imported (creating an optimiser imports them, through torch._dynamo). Imported inside the
    # group, they hold it for ever: destroying it would not stop gloo's threads, and one still releasing the last
    # all_reduce while Python shuts down aborts the process (SIGABRT) -- a DDP run that fails after its last epoch.
    import torch.distributed.nn  # noqa: F401

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size()), device
    finally:
        dist.destroy_process_group()
