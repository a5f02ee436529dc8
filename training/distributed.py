"""Data-parallel training across processes started by torchrun (DistributedDataParallel)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from config.device import pick_device
from config.errors import UserError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # this process among all
    local_rank: int = 0  # this process on its machine: picks the GPU
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process evaluates, logs, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device_name: str) -> tuple[Ranks, torch.device]:
    """This process's ranks and device; joins the process group when torchrun started us."""
    if "RANK" not in os.environ:
        return Ranks(), pick_device(device_name)
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    device = pick_device(device_name)
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {ranks.local_rank} has no GPU ({torch.cuda.device_count()} here); "
                            f"lower --nproc_per_node")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"distributed training runs on cuda or cpu, not {device.type}")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The average of a tensor across processes (itself when there is one)."""
    if ranks.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ranks.world_size
    return value


def from_main(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The main process's tensor, on every process."""
    if ranks.distributed:
        value = value.clone()
        dist.broadcast(value, src=0)
    return value


def wait_for_all(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
