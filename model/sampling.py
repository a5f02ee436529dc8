"""Turning next-token logits into a chosen token."""

import torch
import torch.nn.functional as F


def filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the top_k largest logits of each row (B, V), exactly k even among ties;
    the rest become -inf."""
    top_k = min(top_k, logits.size(-1))
    top = torch.topk(logits, top_k, dim=-1).indices  # (B, k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top, True)  # (B, V)
    return logits.masked_fill(~keep, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose
    probability adds up to at least top_p; the rest become -inf. (B, V)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= top_p  # the most likely token always survives
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None, vocab_limit: int | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V); returns ids (B, 1).

    Only ids below vocab_limit can be picked: a vocabulary padded past the tokenizer's
    (vocab_size=50304 for 50257 tokens) has ids that decode to nothing. temperature 0 is
    greedy (argmax); otherwise logits are divided by the temperature, filtered by top_k and
    top_p, and sampled.
    """
    if vocab_limit is not None and vocab_limit < logits.size(-1):
        logits = logits[:, :vocab_limit]  # (B, vocab_limit): the padding ids are never candidates
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # Shifted so the largest is 0, and divided by no less than float32's smallest normal
    # number: a tiny temperature then gives 0 and very negative logits (greedy), never
    # 0 / 0 = nan. float32, not float64: Apple's GPUs (mps) have no float64.
    logits = logits.float()
    temperature = max(temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = filter_top_p(logits, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
