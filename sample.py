"""Continue a prompt with a trained checkpoint (or GPT-2's weights).

    python sample.py [CONFIG.toml ...] [--key=value ...]

`python sample.py --help` lists every key.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import codecs
import functools
import sys
import time

import torch

from config.device import memory_bytes, pick_device
from config.errors import UserError, run_cli
from config.prompts import encode_prompt, read_prompt
from config.settings import SampleConfig, read_config
from data.tokenizer import Tokenizer
from model import ModelError
from model.decoding import compile_ahead, decoding_bytes, generation_cache, longest_window
from training.init_from import load_chosen


class SampleText:
    """The text of one sample as its tokens arrive; ends at a stop string or end-of-text. Tokens go through an
    incremental UTF-8 decoder: `text` grows by whole characters, a BPE token's part of one waits for the rest."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.text, self.done = "", False
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # as tokenizers decode
        self.printed = 0  # characters already handed out by new_text()

    def add(self, token: int) -> None:
        if token == self.tokenizer.eot_token:  # the end of a document always ends a sample
            self.finish()
        elif not self.done:
            self._append(self.utf8.decode(self.tokenizer.decode_bytes([token])))

    def _append(self, piece: str) -> None:
        """Add decoded text and cut at the first stop string; only the tail can hold a new one."""
        search_from = max(0, len(self.text) - max(map(len, self.stops), default=0) + 1)
        self.text += piece
        if cuts := [i for i in (self.text.find(s, search_from) for s in self.stops) if i >= 0]:
            self.text, self.done = self.text[: min(cuts)], True

    def finish(self) -> None:
        """No more tokens: bytes that waited for the rest of a character are final now."""
        if not self.done:
            self._append(self.utf8.decode(b"", final=True))
        self.done = True

    def new_text(self) -> str:
        """Text not handed out before that can no longer change: a tail that may still
        become a stop string (the longest start of one that the text ends with) waits."""
        held = 0 if self.done else max((n for stop in self.stops for n in range(1, len(stop))
                                         if self.text.endswith(stop[:n])), default=0)
        chunk = self.text[self.printed : len(self.text) - held]
        self.printed = max(self.printed, len(self.text) - held)
        return chunk


def main(argv: list[str]) -> None:
    cfg = read_config(SampleConfig, argv)
    device = pick_device(cfg.device)
    model, tokenizer, *_ = load_chosen(cfg, device)
    prompt = read_prompt(cfg.prompt)
    ids = encode_prompt(prompt, tokenizer, default="prompt" not in cfg.keys_set, start_if_unfit=True)
    if len(ids) > model.config.block_size:
        print(f"note: the prompt is {len(ids):,} tokens; the model reads its last {model.config.block_size} "
              f"(block_size)", file=sys.stderr)
    # refused before its allocations, which a machine would page out for minutes
    per_sample = decoding_bytes(model, len(ids), cfg.max_new_tokens, cfg.use_cache, cfg.compile)
    if cfg.num_samples * per_sample > (memory := memory_bytes(device)):
        longest = longest_window(model.config, cfg.use_cache)  # past which max_new_tokens asks for no more memory
        raise UserError(f"num_samples={cfg.num_samples:,} needs at least {cfg.num_samples * per_sample / 1e9:,.1f} GB "
                        f"for its {'KV cache' if cfg.use_cache else 'activations'}, more than this {device.type}'s "
                        f"{memory / 1e9:,.1f} GB; lower num_samples, or max_new_tokens where the prompt and it are "
                        f"under {longest:,} tokens")
    # (num_samples, T): the prompt's last block_size tokens, all the model reads, once per sample
    idx = torch.tensor([ids[-model.config.block_size :]], dtype=torch.long, device=device).repeat(cfg.num_samples, 1)
    if cfg.compile and cfg.max_new_tokens > 1:  # compiled now, and said so, unless the compile cache holds it
        start = time.perf_counter()  # (the first token comes from the prefill, uncompiled)
        how = ("into CUDA graphs (in each process)" if device.type == "cuda" else
               "(about a minute on a CPU, once for this checkpoint, --weights, --num_samples and cache size)")
        announce = functools.partial(print, f"compile: compiling the decoding step {how} ...", file=sys.stderr,
                                     flush=True)
        if kept := compile_ahead(model, generation_cache(model, idx, cfg.max_new_tokens, compile=True), announce):
            print(f"compile: the decoding step was compiled into {kept} in {time.perf_counter() - start:.1f} s",
                  file=sys.stderr)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = [SampleText(tokenizer, cfg.stop) for _ in range(cfg.num_samples)]
    stream = model.generate_stream(idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.use_cache,
                                   generator, tokenizer.vocab_size, cfg.compile)
    streaming = cfg.num_samples == 1
    if streaming:
        print(prompt, end="", flush=True)
    interrupted = False
    try:
        for next_ids in stream:  # (num_samples, 1)
            for sample, token in zip(samples, next_ids[:, 0].tolist()):
                sample.add(token)
            if streaming:
                print(samples[0].new_text(), end="", flush=True)
            if all(s.done for s in samples):
                break
    except KeyboardInterrupt:  # Ctrl-C: the samples so far are printed, as a streamed one was
        interrupted = True
    except ModelError:  # a damaged compiled step, met after the first token: its error on a line of its own
        if streaming:
            print(flush=True)
        raise
    for sample in samples:
        sample.finish()  # text held back for a stop string that never came is final now
        print((sample.new_text() if streaming else prompt + sample.text) + "\n---------------")
    if interrupted:
        raise KeyboardInterrupt


if __name__ == "__main__":
    run_cli(main, smaller="a smaller num_samples")
