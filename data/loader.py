"""Batches of training windows drawn without replacement: each epoch cuts the tokens into non-overlapping windows
of block_size + 1 tokens (from a random offset) walked in a seeded shuffled order, so every token is seen once per
epoch and (epoch, cursor) is all that resume needs: the cursor counts the epoch's windows taken by all ranks, so a
run resumed on another number of processes walks on where it stopped."""

import numpy as np
import torch

from .errors import DataError


class BatchLoader:
    """Batches x, y (B, T) from shuffled non-overlapping windows; y is x shifted by one. With
    world_size > 1, each rank walks a disjoint share of every epoch's windows."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, split: str = "train"):
        needed = block_size * world_size + 1  # one window (block_size + 1 tokens) per rank
        if len(tokens) < needed:
            raise DataError(f"the {split} split has {len(tokens)} tokens, too few for block_size={block_size} "
                            f"(needs at least {needed}); use more text or a smaller block_size (data/prepare.py's "
                            f"--val_fraction and --split_seed choose the split)")
        self.tokens, self.block_size, self.batch_size, self.seed = tokens, block_size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.load_state_dict({"epoch": 0, "cursor": 0})

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = []
        while len(starts) < self.batch_size:
            if self.cursor == len(self._order):
                self.load_state_dict({"epoch": self.epoch + 1, "cursor": 0})
            take = min(self.batch_size - len(starts), len(self._order) - self.cursor)
            starts.extend(self._order[self.cursor : self.cursor + take])
            self.cursor += take
        T = self.block_size
        windows = torch.from_numpy(np.stack([self.tokens[s : s + T + 1] for s in starts]).astype(np.int64))  # (B, T+1)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # x, y: (B, T)

    def state_dict(self) -> dict:
        # every rank alike; world_size for a resume to name a change in the number of processes
        cursor = self._taken + self.cursor * self.world_size
        return {"epoch": self.epoch, "cursor": cursor, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Go `cursor` windows (all ranks') into `epoch`: this rank's order is its share of the rest, shuffled."""
        self.epoch, self._taken, self.cursor = state["epoch"], state["cursor"], 0  # cursor: into this rank's order
        rng = np.random.default_rng([self.seed, self.epoch])
        T = self.block_size
        # a random offset varies where windows are cut, if every rank still gets a window
        offset = int(rng.integers(0, T)) if len(self.tokens) - 1 >= (self.world_size + 1) * T else 0
        left = rng.permutation((len(self.tokens) - 1 - offset) // T)[self._taken :]
        per_rank = len(left) // self.world_size  # equal shares keep the ranks in step
        self._order = offset + T * left[: per_rank * self.world_size][self.rank :: self.world_size]  # window starts
