"""Turning next-token logits into a chosen token."""

import torch
import torch.nn.functional as F


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None, vocab_limit: int | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V), below vocab_limit (a vocabulary padded past the tokenizer's has
    ids that decode to nothing); returns ids (B, 1). temperature 0 is greedy, else top_k and top_p filter a sample."""
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
    if top_k is not None:  # keep the top_k largest logits of each row, exactly k even among ties
        top = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).indices  # (B, k)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top, True)  # (B, V)
        logits = logits.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1.0:  # nucleus: the fewest most likely tokens holding at least top_p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # mass ranked above; the most likely always survives
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))  # vocabulary order
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
