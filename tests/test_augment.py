"""augment=spans: more training text for distillation, labelled by the teacher; dev/test and the teacher untouched."""

from __future__ import annotations

import pytest
import torch

from distilkit.data.augment import SpanAugment
from distilkit.data.module import Example, TextClassificationData
from distilkit.errors import ConfigError

SENTENCES = ["a gripping , funny and moving film", "dull", "not as bad as it sounds , but close", "two words"]


def test_spans_are_seeded_contiguous_shorter_and_distinct():
    aug = SpanAugment(copies=5, min_words=2, seed=3)
    spans = aug.spans(SENTENCES)
    assert spans == SpanAugment(copies=5, min_words=2, seed=3).spans(SENTENCES)  # seeded
    assert spans != SpanAugment(copies=5, min_words=2, seed=4).spans(SENTENCES)
    assert len(spans) == len(set(spans))  # sentences here share no words' runs, so no cross-sentence repeats either
    for span in spans:
        words = span.split()
        source = next(s.split() for s in SENTENCES if f" {span} " in f" {s} ")  # a contiguous run of one sentence
        assert 2 <= len(words) < len(source)
    assert not any(s in SENTENCES for s in spans)  # never the sentence itself
    # "dull" and "two words" are too short to have a shorter span of >= 2 words
    assert not any(s in ("dull", "two", "words") for s in spans)
    assert 4 <= len(spans) <= 10


class _Rows(TextClassificationData):
    def load_splits(self):
        return {"train": [Example(s, i % 2) for i, s in enumerate(SENTENCES)], "dev": [Example("funny film", 1)],
                "test": [Example("dull film", 0)]}


class _Tok:
    """Whitespace 'tokenizer' over a growing vocabulary (what the data module calls)."""

    pad_token_id = 0

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, texts, truncation=True, max_length=64):
        return {"input_ids": [[self.ids.setdefault(w, len(self.ids) + 1) for w in t.split()][:max_length] for t in texts]}


def test_added_rows_are_train_only_and_take_the_teachers_argmax_as_label():
    data = _Rows(max_length=16)
    tok = _Tok()
    data.tokenize(tok)
    dev_before = data.inputs("dev")
    SpanAugment(copies=3, seed=0).apply(data)  # after tokenize: the training split is re-encoded
    extra = data.extra_train
    assert extra and data.texts("train") == SENTENCES  # the split's own texts (teacher, vocabulary) unchanged
    train = data.encoded["train"]
    assert len(train["input_ids"]) == len(SENTENCES) + len(extra)
    assert train["labels"][: len(SENTENCES)].tolist() == [0, 1, 0, 1]
    assert (train["labels"][len(SENTENCES):] == -1).all()  # unlabelled until the teacher speaks
    assert torch.equal(data.inputs("dev")["input_ids"], dev_before["input_ids"])
    logits = torch.randn(len(train["input_ids"]), 2)
    data.attach_teacher_logits(logits)
    labels = data.encoded["train"]["labels"]
    assert labels[: len(SENTENCES)].tolist() == [0, 1, 0, 1]  # gold labels kept
    assert torch.equal(labels[len(SENTENCES):], logits[len(SENTENCES):].argmax(-1))
    data.tokenize(tok)  # re-tokenized (vocab=train does this): the added rows stay
    assert len(data.encoded["train"]["input_ids"]) == len(SENTENCES) + len(extra)


@pytest.mark.parametrize("kwargs, key", [({"copies": 0}, "copies"), ({"min_words": 0}, "min_words")])
def test_bad_numbers_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        SpanAugment(**kwargs)


def test_augment_in_pipeline_reuses_the_teacher_and_grows_only_the_training_store(compose_cfg, tmp_path):
    """Same teacher key with and without augmentation (the teacher is fine-tuned on the real rows only,
    and cached once); the training logits are stored for every added row; the rows are reported."""
    from distilkit.pipeline import Run

    cache = tmp_path / "cache"
    plain = Run(compose_cfg(f"paths.cache_dir={cache}"), {})
    aug = Run(compose_cfg("augment=spans", "augment.copies=2", f"paths.cache_dir={cache}"), {"augment": "spans"})
    assert aug.teacher_key() == plain.teacher_key()  # so a cached teacher is a hit
    metrics = aug()
    own, added = metrics["augment/train_rows_own"], metrics["augment/train_rows_added"]
    assert own == 64 and 0 < added <= 2 * own
    train = aug.data.encoded["train"]
    assert len(train["teacher_logits"]) == own + added
    assert (train["labels"] >= 0).all()
    stored = [p for p in (cache / "teacher_logits").rglob("*") if p.is_file()]
    assert sorted(torch.load(p).shape[0] for p in stored if p.suffix == ".pt") == sorted([32, 32, own + added])  # test, dev, train


@pytest.mark.parametrize("override, message", [("task.store_logits=false", r"augment.*task.store_logits=true"),
                                               ("task=causal_lm", r"augment.*not task=causal_lm")])
@pytest.mark.parametrize("option", ["spans", "replace"])
def test_augment_it_cannot_label_is_one_clear_error_before_any_run(compose_cfg, option, override, message):
    from distilkit.pipeline import Run

    with pytest.raises(ConfigError, match=message):
        Run(compose_cfg(f"augment={option}", override), {})


# --- augment=replace: TinyBERT's word replacement by teacher-embedding neighbours ----------------------

def _tokenizer_and_embeddings():
    from transformers import BertTokenizerFast

    clusters = [["good", "great", "fine"], ["bad", "awful", "terrible"], ["movie", "film"]]
    words = [w for c in clusters for w in c]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", ",", "##s", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    torch.manual_seed(0)
    emb = torch.randn(len(vocab), 8) * 0.01
    for c, cluster in enumerate(clusters):  # each cluster along its own axis: neighbours are the cluster's words
        for w in cluster:
            emb[vocab.index(w), c] += 1.0
    return tokenizer, emb, clusters


def test_replace_neighbours_come_from_the_teachers_embeddings():
    from distilkit.data.augment import WordReplaceAugment

    tokenizer, emb, clusters = _tokenizer_and_embeddings()
    texts = ["good movie , bad film", "great fine awful terrible"]
    table = WordReplaceAugment(neighbours=2).neighbour_table(emb, tokenizer, texts)
    for cluster in clusters[:2]:
        for w in cluster:
            assert set(table[w]) == set(cluster) - {w}, w
    assert table["movie"][0] == "film" and table["film"][0] == "movie"
    assert "," not in table and "," not in {n for ns in table.values() for n in ns}  # words only
    # candidates=train: only words of the training text; all: any word of the vocabulary
    narrow = WordReplaceAugment(neighbours=1).neighbour_table(emb, tokenizer, ["good bad"])
    assert narrow == {"good": ["bad"], "bad": ["good"]}
    wide = WordReplaceAugment(neighbours=1, candidates="all").neighbour_table(emb, tokenizer, ["good bad"])
    assert wide["good"][0] in ("great", "fine") and wide["bad"][0] in ("awful", "terrible")


def test_replace_variants_are_seeded_replace_words_only_and_drop_repeats():
    from distilkit.data.augment import WordReplaceAugment

    tokenizer, emb, _ = _tokenizer_and_embeddings()
    texts = ["good movie , bad film", "good , good"]
    aug = WordReplaceAugment(copies=6, p=1.0, neighbours=2, candidates="all", seed=1)
    table = aug.neighbour_table(emb, tokenizer, texts)
    out = aug.variants(texts, table)
    assert out == WordReplaceAugment(copies=6, p=1.0, neighbours=2, candidates="all", seed=1).variants(texts, table)
    assert out != WordReplaceAugment(copies=6, p=1.0, neighbours=2, candidates="all", seed=2).variants(texts, table)
    assert len(out) == len(set(out)) and not set(out) & set(texts)
    by_length = {len(t.split()): t.split() for t in texts}  # the two sentences differ in length
    for variant in out:
        words = variant.split()
        for new, old in zip(words, by_length[len(words)]):
            assert new == old == "," or new in table[old]  # p=1: every word replaced by one of its neighbours
    # "good , good": 2 neighbours per word, so at most 4 distinct variants however many copies
    assert 1 <= sum(1 for v in out if len(v.split()) == 3) <= 4
    with pytest.raises(ConfigError, match="candidates"):
        WordReplaceAugment(candidates="glove")
    with pytest.raises(ConfigError, match="p"):
        WordReplaceAugment(p=0)


def test_replace_in_pipeline_adds_teacher_labelled_variants(compose_cfg, tmp_path):
    from distilkit.pipeline import Run

    run = Run(compose_cfg("augment=replace", "augment.copies=2", f"paths.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1"),
              {"augment": "replace"})
    metrics = run()
    own, added = metrics["augment/train_rows_own"], metrics["augment/train_rows_added"]
    assert own == 64 and own < added <= 2 * own and metrics["augment/words_replaceable"] > 0
    train = run.data.encoded["train"]
    assert len(train["teacher_logits"]) == own + added and (train["labels"] >= 0).all()


# --- augment=corpus: unlabelled text from a file ----------------------------------------------------------

def test_corpus_lines_drop_blanks_repeats_training_and_evaluation_texts_and_draw_seeded(tmp_path):
    from distilkit.data.augment import CorpusAugment

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("new line one\n\n  new   line two \ndull\nnew line one\nfunny film\nnew line three\nFunny  FILM\nnew line four\n")
    own, held = ["dull"], {"funny film"}
    texts, leaked = CorpusAugment(str(corpus)).lines(own, held)
    assert texts == ["new line one", "new line two", "new line three", "new line four"] and leaked == 2  # case, spacing aside
    draws = {tuple(CorpusAugment(str(corpus), max_rows=2, seed=s).lines(own, held)[0]) for s in range(12)}
    assert all(len(d) == 2 and list(d) == [t for t in texts if t in d] for d in draws)  # two lines, file order kept
    assert len(draws) > 1  # the seed decides the draw
    assert CorpusAugment(str(corpus), max_rows=2, seed=5).lines(own, held) == CorpusAugment(str(corpus), max_rows=2, seed=5).lines(own, held)
    assert CorpusAugment(str(corpus), max_rows=99).lines(own, held)[0] == texts


@pytest.mark.parametrize("kwargs, key", [({"path": "/no/such/file.txt"}, "path"), ({"max_rows": 0}, "max_rows"),
                                         ({"max_rows": True}, "max_rows")])
def test_corpus_bad_input_names_the_key(tmp_path, kwargs, key):
    from distilkit.data.augment import CorpusAugment

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a line\n")
    with pytest.raises(ConfigError, match=key):
        CorpusAugment(**{"path": str(corpus), **kwargs})


def test_corpus_in_pipeline_adds_teacher_labelled_lines_and_never_an_evaluation_text(compose_cfg, tmp_path):
    from hydra.utils import instantiate

    from distilkit.pipeline import Run

    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    data = instantiate(compose_cfg(cache).data)
    dev, test, train = data.texts("dev"), data.texts("test"), data.texts("train")
    novel = [f"the movie was new sentence number {i}" for i in range(20)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([*novel[:10], dev[0], train[0], test[1], *novel[10:]]) + "\n")
    run = Run(compose_cfg("augment=corpus", f"augment.path={corpus}", cache, "trainer.max_epochs=1"), {"augment": "corpus"})
    metrics = run()
    assert metrics["augment/train_rows_own"] == len(train) and metrics["augment/train_rows_added"] == 20
    assert metrics["augment/rows_dropped_eval"] == 2
    assert run.data.extra_train == novel
    stored = run.data.encoded["train"]
    assert len(stored["teacher_logits"]) == len(train) + 20
    assert torch.equal(stored["labels"][len(train):], stored["teacher_logits"][len(train):].argmax(-1))


def test_corpus_in_another_encoding_is_one_error_naming_encoding_and_the_line(tmp_path):
    from distilkit.data.augment import CorpusAugment

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes("a line\nun film charmant et \xe9mouvant\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        CorpusAugment(str(corpus)).lines([], set())
    assert err.value.key == "encoding" and f"{corpus}:2:" in err.value.message
    assert CorpusAugment(str(corpus), encoding="latin-1").lines([], set())[0] == ["a line", "un film charmant et \xe9mouvant"]
