"""Learning-rate schedule: linear warmup, then cosine decay."""
import math


def lr_scale(step: int, warmup_iters: int, lr_decay_iters: int, min_ratio: float) -> float:
    """What every peak learning rate is multiplied by at `step`: a linear warmup to 1,
    then a cosine decay to min_ratio at lr_decay_iters, then min_ratio."""
    if step < warmup_iters:
        return (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_ratio
    progress = (step - warmup_iters) / max(1, lr_decay_iters - warmup_iters)  # 0 -> 1
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)
