"""Do teacher and student tokenize alike? Compared beyond the vocabulary size (``task=causal_lm``).

Two tokenizers of the same size can still map tokens to different ids (another merge order, a shifted
added token) or use other special tokens; then the teacher's distribution over ids means something else
to the student, and KD trains it on noise (other KD trainers fail later with a broadcast error, or not at
all). :func:`tokenizer_identity` is what must agree: the size, a SHA-256 of the sorted ``token -> id``
mapping, and the special tokens with their ids; :func:`tokenizer_mismatch` names the first difference.
"""

from __future__ import annotations

import hashlib
import json

SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token")


def tokenizer_identity(tokenizer) -> dict:
    """``{"size", "vocab_sha256", "special": {name: [token, id]}}`` of a Hugging Face tokenizer."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()
    special = {}
    for name in SPECIAL:
        token = getattr(tokenizer, name, None)
        special[name] = [str(token), vocab.get(str(token))] if token is not None else None
    return {"size": len(vocab), "vocab_sha256": digest, "special": special}


def tokenizer_mismatch(teacher, student) -> str | None:
    """``None`` if the two tokenizers agree (:func:`tokenizer_identity`), else the first difference in words."""
    t, s = tokenizer_identity(teacher), tokenizer_identity(student)
    if t["size"] != s["size"]:
        return f"the teacher's vocabulary has {t['size']} tokens, the student's {s['size']}"
    if t["vocab_sha256"] != s["vocab_sha256"]:
        tv, sv = teacher.get_vocab(), student.get_vocab()
        moved = sorted((tok for tok in tv if sv.get(tok) != tv[tok]), key=tv.get)
        example = moved[0]
        where = f"id {sv[example]} in the student's" if example in sv else "absent from the student's"
        return (f"both have {t['size']} tokens but {len(moved)} map to other ids (e.g. {example!r} is id {tv[example]} in the "
                f"teacher's vocabulary, {where})")
    for name in SPECIAL:
        if t["special"][name] != s["special"][name]:
            return f"special token {name} differs: teacher {t['special'][name]}, student {s['special'][name]}"
    return None
