"""The student's own tokenizer, trained on the unlabelled half's code with Hugging Face ``tokenizers``.

Four kinds, as in the paper's space: byte-level BPE (RoBERTa's), WordPiece, Unigram and WordLevel, each with
RoBERTa's special tokens at RoBERTa's ids. A trained tokenizer is cached by (kind, vocab size, data hash).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from avatar._io import cache_dir, sha256_json, write_text_atomic
from avatar.errors import AvatarError
from avatar.student import SPECIAL_TOKENS, TOKENIZERS

log = logging.getLogger(__name__)

BOS, PAD, EOS, UNK, MASK = SPECIAL_TOKENS
RECIPE = 1  # bump when the way tokenizers are built changes, so cached ones are not reused


def _untrained(kind: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    special = list(SPECIAL_TOKENS)
    if kind == "BPE":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    elif kind == "WordPiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=special)
    elif kind == "Unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=special, unk_token=UNK)
    elif kind == "WordLevel":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=special)
    else:
        raise AvatarError(f"unknown tokenizer kind {kind!r}; choose from {', '.join(TOKENIZERS)}")
    return tok, trainer


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD, mask_token=MASK, cls_token=BOS, sep_token=EOS,
    )


def distinct_texts(examples: Iterable) -> list[str]:
    """Every function of the examples once (clone pairs contribute both functions; repeats are dropped)."""
    return list(dict.fromkeys(text for ex in examples for text in ex.texts))


def cached_path(kind: str, vocab_size: int, texts: Sequence[str]) -> Path:
    """Where the cache keeps a ``kind`` tokenizer of ``vocab_size`` trained on ``texts`` (a file that may be copied
    to another machine's cache, to spare it the training)."""
    key = sha256_json({"recipe": RECIPE, "kind": kind, "vocab_size": vocab_size, "texts": sha256_json(list(texts))})
    return cache_dir() / "tokenizers" / f"{kind}-{vocab_size}-{key[:16]}.json"


def train_tokenizer(kind: str, vocab_size: int, texts: Sequence[str]) -> PreTrainedTokenizerFast:
    """Train (or fetch from the cache) a ``kind`` tokenizer of at most ``vocab_size`` tokens on ``texts``."""
    cached = cached_path(kind, vocab_size, texts)
    if cached.is_file():
        return _wrap(Tokenizer.from_file(str(cached)))
    tok, trainer = _untrained(kind, vocab_size)
    log.info("training a %s tokenizer (vocab %d) on %d functions", kind, vocab_size, len(texts))
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for i, special in enumerate(SPECIAL_TOKENS):  # the student's model config relies on these ids
        if tok.token_to_id(special) != i:
            raise RuntimeError(f"{kind} tokenizer put {special} at id {tok.token_to_id(special)}, not {i}")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, 0), (EOS, SPECIAL_TOKENS.index(EOS))]
    )
    write_text_atomic(cached, tok.to_str())
    return _wrap(tok)
