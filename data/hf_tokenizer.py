"""Tokenizers in Hugging Face's format (tokenizer.json, tokenizer_config.json), both ways. In: a byte-level BPE
(GPT-2's, Llama 3's, Qwen's) becomes a BPETokenizer over tiktoken ranks (GPT-2's own: the gpt2 kind); anything
else (SentencePiece, WordPiece, ...) is refused. Out: tiktoken Encodings through transformers' TikTokenConverter;
the char tokenizer from `tokenizers` parts, which comes back in as the char tokenizer."""

import json
from pathlib import Path

from .errors import DataError
from .sources import SAFE_CUT
from .tokenizer import END_OF_TEXT, BPETokenizer, CharTokenizer, GPT2Tokenizer, Tokenizer, load_gpt2_encoding

SUPPORTED = "only byte-level BPE tokenizers (GPT-2, Llama 3, Qwen and the like) are read"
# what a conversion is checked on, against the Hugging Face tokenizer itself
PROBE_TEXT = ("Crème brûlée, naïve façade!\n  日本語のテキスト, "
              "中文 😀👩‍👩‍👧 don't 1234567\t\tend")
EVERY_CHARACTER = r"[\s\S]"  # the split that puts each character apart, in the char tokenizer written out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as JSON ({e}); give a folder written by save_pretrained") from None


def _split_pattern(pre: dict | None, folder: Path) -> str:
    """The regex a byte-level pre-tokenizer cuts text with: a Split then ByteLevel (Llama 3, Qwen),
    or ByteLevel alone with its built-in pattern, GPT-2's."""
    from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pattern, the one ByteLevel builds in

    steps = (pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]) if pre else []
    kinds = [step.get("type") for step in steps]
    if kinds[-1:] == ["ByteLevel"] and not steps[-1].get("add_prefix_space"):
        use_regex = steps[-1].get("use_regex", True)
        if kinds == ["ByteLevel"] and use_regex:
            return r50k_pat_str
        split = steps[0]
        if kinds == ["Split", "ByteLevel"] and not use_regex and split.get("behavior") == "Isolated" \
                and not split.get("invert") and "Regex" in split.get("pattern", {}):
            return split["pattern"]["Regex"]
    raise DataError(f"{folder}: its pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) has no tiktoken "
                    f"equivalent; {SUPPORTED}")


def _byte_ranks(model: dict, special: dict[str, int], folder: Path) -> dict[bytes, int]:
    """The vocabulary as tiktoken ranks (token bytes -> id), checked to merge in id order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab, special_ids = model["vocab"], set(special.values())
    try:
        ranks = {bytes(byte_of[c] for c in token): i for token, i in vocab.items() if i not in special_ids}
    except KeyError as e:
        raise DataError(f"{folder}: its vocabulary holds {e.args[0]!r}, not a byte-level character; "
                        f"{SUPPORTED}") from None
    if {bytes([b]) for b in range(256)} - ranks.keys():
        raise DataError(f"{folder}: its vocabulary lacks some of the 256 single bytes; {SUPPORTED}")
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges", [])]
    merged = [vocab.get(left + right, -1) for left, right in merges]
    if min(merged, default=0) < 0 or any(a > b for a, b in zip(merged, merged[1:])):
        raise DataError(f"{folder}: its merges do not follow its vocabulary's ids, which tiktoken's ranks must do")
    return ranks


def tokenizer_from_hf_folder(folder: str | Path) -> Tokenizer:
    """The tokenizer of a Hugging Face model folder (GPT2Tokenizer for GPT-2's own, also for a GPT-2 model saved
    without one; CharTokenizer for ours written out); a DataError for anything but a byte-level BPE."""
    try:
        return _read_hf_tokenizer(Path(folder))
    except (AttributeError, KeyError, TypeError, IndexError) as e:  # a list, a string or no key where a field goes
        raise DataError(f"{folder}: its tokenizer files are not laid out as transformers writes them "
                        f"({type(e).__name__}: {e}); save the tokenizer again with save_pretrained") from None


def _read_hf_tokenizer(folder: Path) -> Tokenizer:
    import tokenizers

    path = folder / "tokenizer.json"
    if not path.is_file():
        if (folder / "config.json").is_file() and _read_json(folder / "config.json").get("model_type") == "gpt2":
            return GPT2Tokenizer()  # save_pretrained of the model alone writes no tokenizer
        raise DataError(f"{folder} has no tokenizer.json; save the model's tokenizer there too (save_pretrained)")
    spec = _read_json(path)
    model, normalizer = spec.get("model") or {}, spec.get("normalizer")
    special = {token["content"]: token["id"] for token in spec.get("added_tokens", [])}
    if (char_tokenizer := _written_char_tokenizer(spec, special)) is not None:
        return char_tokenizer
    if model.get("type") != "BPE":
        raise DataError(f"{folder}: its tokenizer is a {model.get('type')} model; {SUPPORTED}")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise DataError(f"{folder}: its tokenizer is a SentencePiece-style BPE (byte fallback or word markers); "
                        f"{SUPPORTED}")
    pattern = _split_pattern(spec.get("pre_tokenizer"), folder)
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise DataError(f"{folder}: its tokenizer normalizes text with {normalizer.get('type')}, which is not "
                        f"supported; {SUPPORTED} (with no normalizer or NFC)")
    config = folder / "tokenizer_config.json"  # its eos_token ends a document, else <|endoftext|>, if special
    eos = _read_json(config).get("eos_token") if config.is_file() else None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    tokenizer = BPETokenizer(_byte_ranks(model, special, folder), pattern, special,
                             special.get(eos, special.get(END_OF_TEXT)), "NFC" if normalizer else None)
    hf = tokenizers.Tokenizer.from_file(str(path))
    if tokenizer.encode(PROBE_TEXT) != hf.encode(PROBE_TEXT, add_special_tokens=False).ids:
        raise DataError(f"{folder}: its tokenizer splits text in a way tiktoken does not reproduce; {SUPPORTED}")
    bounds = {i for _, span in hf.pre_tokenizer.pre_tokenize_str(PROBE_TEXT) for i in span}  # its pieces' ends
    if any(cut.start() not in bounds for cut in SAFE_CUT.finditer(PROBE_TEXT)):  # a piece across a cut
        raise DataError(f"{folder}: its pre-tokenizer joins text across the places where data/prepare.py cuts "
                        f"long documents (between a word and a space); {SUPPORTED}")
    if tokenizer.vocab_size == 50257 and not tokenizer.normalizer:  # GPT-2's own, perhaps
        mine, gpt2 = tokenizer.encoding, load_gpt2_encoding()
        if all(getattr(mine, a) == getattr(gpt2, a) for a in ("_pat_str", "_special_tokens", "_mergeable_ranks")):
            return GPT2Tokenizer()
    return tokenizer


def _written_char_tokenizer(spec: dict, added: dict[str, int]) -> CharTokenizer | None:
    """The char tokenizer, if spec (`added`: its added tokens by text) is one as save_hf_tokenizer writes it."""
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "WordLevel" or pre.get("pattern") != {"Regex": EVERY_CHARACTER}:
        return None
    vocab = {text: i for text, i in model["vocab"].items() if text not in added}
    chars = sorted(vocab, key=vocab.get)
    if sorted(vocab.values()) != list(range(len(chars))) or any(len(c) != 1 for c in chars) \
            or added not in ({}, {END_OF_TEXT: len(chars)}):
        return None
    return CharTokenizer("".join(chars), end_of_text=bool(added))


def save_hf_tokenizer(tokenizer: Tokenizer, folder: Path, max_length: int) -> None:
    """Write tokenizer.json and tokenizer_config.json, which transformers' AutoTokenizer loads offline."""
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if isinstance(tokenizer, CharTokenizer):  # one token per character (code point), by its place in chars
        special = {END_OF_TEXT: tokenizer.eot_token} if tokenizer.eot_token is not None else {}
        vocab = {**{ch: i for i, ch in enumerate(tokenizer.chars)}, **special}
        hf = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(EVERY_CHARACTER), behavior="isolated")
        hf.decoder = decoders.Fuse()  # characters joined with nothing between them
        hf.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in special])
    else:  # a tokenizer over a tiktoken Encoding, converted by transformers with these ranks and ids
        from transformers.convert_slow_tokenizer import TikTokenConverter

        encoding, special = tokenizer.encoding, tokenizer.encoding._special_tokens

        class EncodingConverter(TikTokenConverter):
            def load_tiktoken_bpe(self, _):  # the ranks in memory, where the converter reads a .tiktoken file
                return encoding._mergeable_ranks

            def extract_vocab_merges_from_model(self, tiktoken_url):
                vocab, merges = super().extract_vocab_merges_from_model(tiktoken_url)
                # the special tokens at their own ids: added later, they would take the next free ones
                return {**vocab, **special}, merges

        hf = EncodingConverter(pattern=encoding._pat_str, extra_special_tokens=special).converted()
        if tokenizer.normalizer == "NFC":
            hf.normalizer = normalizers.NFC()
    eot_text = {i: t for t, i in special.items()}.get(tokenizer.eot_token)
    hf.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
              "clean_up_tokenization_spaces": False}  # decode gives the text back as it was
    if eot_text is not None:
        config.update(bos_token=eot_text, eos_token=eot_text)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
