"""The optimizers, which parameters each one moves, and the learning-rate schedule they follow.

AdamW alone (the GPT-2 recipe), or Muon beside it (the modern recipe) for the matrices that map hidden
activations to hidden activations: the blocks' attention and MLP. The embeddings and the head stay with
AdamW (their rows belong to single tokens, not a linear map of the hidden state), as do norms and biases.
"""

import math

import torch

from config.device import resolve_dtype
from config.errors import UserError
from config.settings import TrainConfig
from model import GPT


def on_muon(optimizer: str, name: str, param: torch.Tensor) -> bool:
    """Whether Muon moves this parameter: with optimizer=muon, the blocks' matrices; AdamW moves the rest."""
    return optimizer == "muon" and param.dim() == 2 and name.startswith("transformer.h.")


def orthogonalise(updates: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
                  ) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration (as torch.optim.Muon runs it) on a stack of same-shape matrices
    (n, out, in), in their dtype: about the nearest orthogonal matrix to each, singular values near 1."""
    a, b, c = coefficients
    tall = updates.size(-2) > updates.size(-1)
    x = updates.mT if tall else updates  # (n, short side, long side)
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.mT  # (n, short, short)
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with its Newton-Schulz iteration batched per shape (one kernel launch, not one per
    matrix) and in ns_dtype: float32 on CPUs that only emulate bfloat16, several times slower there; in
    bfloat16 it is torch's step bit for bit. Same state, so a checkpoint resumes on either kind of device."""

    def __init__(self, params, ns_dtype: torch.dtype, **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)
            if not params:  # no gradients in this group
                continue
            torch._foreach_lerp_(buffers, grads, 1 - group["momentum"])
            updates = torch._foreach_lerp(grads, buffers, group["momentum"]) if group["nesterov"] else buffers
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            for rows, cols in dict.fromkeys(p.shape for p in params):
                same = [i for i, p in enumerate(params) if p.shape == (rows, cols)]
                stacked = torch.stack([updates[i] for i in same]).to(self.ns_dtype)  # (n, out, in)
                ortho = orthogonalise(stacked, group["ns_coefficients"], group["ns_steps"], group["eps"])
                torch._foreach_add_([params[i] for i in same], list(ortho.to(params[same[0]].dtype).unbind()),
                                    alpha=-group["lr"] * math.sqrt(max(1, rows / cols)))  # torch's "original" lr


def lr_scale(cfg: TrainConfig, step: int) -> float:
    """The factor on every peak learning rate in the update after `step` steps: with decay_lr, a linear warmup to 1
    and a cosine decay to min_lr / learning_rate (then flat); 1 without."""
    if not cfg.decay_lr:
        return 1.0
    warmup_iters, lr_decay_iters, min_ratio = cfg.warmup_iters, cfg.lr_decay_iters, cfg.min_lr / cfg.learning_rate
    if step < warmup_iters:
        return (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_ratio
    progress = (step - warmup_iters) / (lr_decay_iters - warmup_iters)  # 0 -> 1; warmup_iters <= step < lr_decay_iters
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)


class Optimizers:
    """One or two optimizers stepped together, each with its own peak learning rate."""

    def __init__(self, parts: dict[str, torch.optim.Optimizer]):
        self.parts = parts

    def set_lr_scale(self, scale: float) -> None:
        """Every learning rate at `scale` times its peak (the schedule's warmup and decay)."""
        for optimizer in self.parts.values():
            for group in optimizer.param_groups:
                # the peak is the config's lr it was built with (a resume may change it): load_state_dict keeps defaults
                group["lr"] = optimizer.defaults["lr"] * scale

    def update(self, scaler: torch.amp.GradScaler, parameters, grad_clip: float) -> None:
        """Clip the gradients to grad_clip (when positive), step every optimizer, clear the gradients."""
        if grad_clip > 0:
            for optimizer in self.parts.values():
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        for optimizer in self.parts.values():
            scaler.step(optimizer)  # skipped, like any step, when float16 gradients overflowed
            optimizer.zero_grad(set_to_none=True)
        scaler.update()

    def state_dict(self) -> dict:
        return {name: optimizer.state_dict() for name, optimizer in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        if state.keys() != self.parts.keys():
            raise UserError(f"cannot resume: the checkpoint's optimizer is {' + '.join(state)} but the config asks "
                            f"for {' + '.join(self.parts)}; use the same optimizer or a new out_dir")
        try:
            for name, optimizer in self.parts.items():
                # the config's settings (lr: set each step), which a resume may change, over the saved groups' (the
                # device's, such as fused, stay the saved state's)
                own = [{k: g[k] for k in ("betas", "weight_decay", "momentum") if k in g}
                       for g in optimizer.param_groups]
                optimizer.load_state_dict(state[name])
                for group, settings in zip(optimizer.param_groups, own):
                    group.update(settings)
        except ValueError:
            raise UserError("cannot resume: the checkpoint's optimizer state does not fit this model's parameters; "
                            "sample or evaluate it, or start a new out_dir") from None


def build_optimizers(model: GPT, cfg: TrainConfig, device: torch.device) -> Optimizers:
    """AdamW with weight decay on matrices only; or Muon for the blocks' matrices and AdamW for the rest."""
    named = list(model.named_parameters())  # a tied head appears once, as the token embedding
    for_muon = [p for n, p in named if on_muon(cfg.optimizer, n, p)]
    for_adamw = [p for n, p in named if not on_muon(cfg.optimizer, n, p)]
    groups = [{"params": [p for p in for_adamw if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in for_adamw if p.dim() < 2], "weight_decay": 0.0}]  # biases, norms
    parts = {"adamw": torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2),
                                        fused=device.type == "cuda")}
    if for_muon:
        parts["muon"] = Muon(for_muon, getattr(torch, resolve_dtype("auto", device)),  # bfloat16 or float32
                             lr=cfg.muon_lr, momentum=cfg.muon_momentum, weight_decay=cfg.weight_decay)
    return Optimizers(parts)
