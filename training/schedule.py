"""Learning-rate schedule: linear warmup, then cosine decay to min_lr."""
import math


def learning_rate_at(step: int, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, lr_decay_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)
