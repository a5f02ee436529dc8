"""Scoring a whole text in non-overlapping windows of block_size: every token's loss, and their summary.

Bits per byte divides the total loss by the predicted tokens' UTF-8 bytes, so char and BPE models compare."""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .gpt import GPT


@dataclass
class TokenScores:
    """Per predicted token (tokens 1..N-1 of the text)."""

    losses: np.ndarray  # (N-1,) nats: -log p(token | earlier tokens of its window)
    top_ids: np.ndarray  # (N-1, k) the model's k most likely guesses
    top_probs: np.ndarray  # (N-1, k) their probabilities


@dataclass
class EvalSummary:
    tokens: int  # tokens predicted
    bytes: int  # UTF-8 bytes of those tokens
    loss: float  # mean nats per token
    perplexity: float
    bits_per_byte: float | None  # None when the predicted tokens hold no bytes (an end-of-text token alone)


@torch.no_grad()
def score_tokens(model: GPT, tokens: np.ndarray, batch_size: int, top_k: int = 0,
                 show_progress: bool = False) -> TokenScores:
    """Loss of every token after the first, in non-overlapping windows of block_size, in float32."""
    device = next(model.parameters()).device
    T = min(model.config.block_size, max(1, len(tokens) - 1))  # a text shorter than the context: one window of it
    losses, top_ids, top_probs = [], [], []
    model.eval()
    for first in tqdm(range(0, len(tokens) - 1, batch_size * T), unit="batch", disable=not show_progress):
        chunk = torch.from_numpy(tokens[first : first + batch_size * T + 1].astype(np.int64))  # B windows and a token
        chunk = F.pad(chunk, (0, -(len(chunk) - 1) % T), value=-1)  # -1 pads the last window to T targets
        x, y = chunk[:-1].view(-1, T).clamp(min=0), chunk[1:].view(-1, T)  # (B, T) each, window after window
        logits = model(x.to(device))[0].float().cpu()  # (B, T, V); padding comes last, so it cannot leak backwards
        valid = y >= 0
        per_token = F.cross_entropy(logits.transpose(1, 2), y.clamp(min=0), reduction="none")  # (B, T)
        losses.append(per_token[valid].double().numpy())
        if top_k:
            probs, ids = torch.softmax(logits[valid], dim=-1).topk(top_k, dim=-1)  # (n, k)
            top_ids.append(ids.numpy())
            top_probs.append(probs.numpy())
    empty = [np.zeros((0, top_k))]  # top_k 0: nothing was kept
    return TokenScores(np.concatenate(losses), np.concatenate(top_ids or empty), np.concatenate(top_probs or empty))


def summarize(losses: np.ndarray, tokens: np.ndarray, token_bytes: np.ndarray) -> EvalSummary:
    """Mean loss, perplexity and bits per byte of the predicted tokens (tokens[1:])."""
    n_bytes = int(token_bytes[tokens[1:].astype(np.int64)].sum())
    total = float(losses.sum())
    mean = total / len(losses)
    try:
        perplexity = math.exp(mean)
    except OverflowError:  # a diverged model's: a mean loss past ~710 nats
        perplexity = math.inf
    return EvalSummary(len(losses), n_bytes, mean, perplexity, total / n_bytes / math.log(2) if n_bytes else None)
