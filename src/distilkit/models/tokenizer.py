"""A WordPiece tokenizer built offline from the training texts (for a teacher built from scratch).

The vocabulary is chosen deterministically: the special tokens, every character seen (alone and as
a ``##`` continuation, so any word of those characters can be spelled), then whole words by
descending count (ties alphabetical) up to ``vocab_size``. The same texts always give the same
vocabulary and ids. (``tokenizers``' own WordPiece trainer breaks frequency ties in hash-map order,
which differs between calls: two runs with one seed got different tokenizers.)
"""

from __future__ import annotations

from collections import Counter

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}


def build_vocab(words: Counter, vocab_size: int) -> dict[str, int]:
    """Specials, characters (alone and ``##``-continued), then the most frequent words; ids in that order."""
    chars = sorted({c for word in words for c in word})
    tokens = list(SPECIAL.values()) + chars + [f"##{c}" for c in chars]
    frequent = sorted(words.items(), key=lambda item: (-item[1], item[0]))
    seen = set(tokens)
    tokens += [w for w, _ in frequent if w not in seen][: max(0, vocab_size - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def train_wordpiece(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Uncased BERT-style WordPiece with ``[CLS] ... [SEP]`` post-processing; the same for the same texts."""
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = build_vocab(words, vocab_size)
    tok = Tokenizer(models.WordPiece(vocab, unk_token=SPECIAL["unk_token"]))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
