"""Data-parallel training across processes started by torchrun (DistributedDataParallel)."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from config.device import pick_device
from config.errors import USER_ERRORS, UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # this process among all
    world_size: int = 1
    per_machine: int = 1  # processes on this machine (torchrun's nproc_per_node)

    @property
    def is_main(self) -> bool:
        """Only the main process evaluates, logs, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def seed(self, seed: int, step: int = 0) -> None:
        """This process's own random stream (its dropout masks), from the run's seed and, on a resume, the step."""
        torch.manual_seed(seed + 1_000_003 * self.rank + step)


def start(device_name: str) -> tuple[Ranks, torch.device]:
    """This process's ranks and device; joins the process group when torchrun started us."""
    device = pick_device(device_name)
    if "RANK" not in os.environ:
        return Ranks(), device
    local_rank = int(os.environ["LOCAL_RANK"])  # this process on its machine: picks the GPU
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} here); "
                            f"lower --nproc_per_node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"distributed training runs on cuda or cpu, not {device.type}")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])), device


def mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The average of a tensor across processes, in place (itself when there is one)."""
    if ranks.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ranks.world_size
    return value


def from_main(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """The main process's numbers, on every process."""
    value = torch.tensor(values, dtype=torch.float32, device=device)  # mps has no float64
    if ranks.distributed:
        dist.broadcast(value, src=0)
    return value.tolist()


def wait_for_all(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def main_first(ranks: Ranks, action: Callable[[], T]) -> T | None:
    """action's result on the main process (None on the others), which wait for it; when it refuses (a UserError
    or the like), the main process raises it and the others exit quietly (status 2) instead of a broken collective's
    traceback."""
    refusal, result = None, None
    if ranks.is_main:
        try:
            result = action()
        except USER_ERRORS as e:
            refusal = e
    refused = [refusal is not None]  # the main process's answer, on every process
    if ranks.distributed:
        dist.broadcast_object_list(refused, src=0)
    if refused[0]:
        raise refusal if ranks.is_main else SystemExit(2)  # the others exit quietly: the main process says why
    return result


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
