"""Shared fixtures: Hydra-composed tiny configs, a tiny saved BERT directory, the ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

MISSING_KEY = object()

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "data" / "sst2"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(1)  # tiny models; `make test` runs two pytest workers on two cores

# Small everything: a run of the whole pipeline takes seconds.
TINY = [
    "data.num_train=64",
    "data.num_dev=32",
    "data.num_test=32",
    "data.max_length=16",
    "data.batch_size=16",
    "teacher.num_layers=2",
    "teacher.hidden_size=32",
    "teacher.num_attention_heads=2",
    "teacher.intermediate_size=64",
    "teacher.vocab_size=200",
    "teacher.finetune.max_epochs=1",
    "trainer.max_epochs=1",
    "hardware.measure.batch_sizes=[1,4]",
    "hardware.measure.threads=1",
    "hardware.measure.warmup=1",
    "hardware.measure.min_samples=3",
    "hardware.measure.min_time_s=0",
    "hardware.measure.rewarm_ms=0",  # no re-warm before a turn: tests check what is timed, not how fast
]


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """TINY plus the output root; later overrides win."""
    return [f"paths.root_dir={root}", *TINY, *extra]


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(*overrides)`` -> the composed config, tiny, writing under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _compose(*overrides: str, tiny: bool = True):
            root = [f"paths.root_dir={tmp_path}"]
            if not tiny:
                return compose(config_name="config", overrides=[*root, *overrides])
            chosen = compose(config_name="config", overrides=[*root, *overrides])
            # TINY keys that exist for the chosen options (e.g. data.num_train only for synthetic)
            small = [o for o in TINY if OmegaConf.select(chosen, o.split("=")[0], default=MISSING_KEY) is not MISSING_KEY]
            return compose(config_name="config", overrides=[*root, *small, *overrides])

        yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory) -> Path:
    """One cache for tests that don't test caching: the tiny teacher is fine-tuned and exported once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny BERT + WordPiece tokenizer written with ``save_pretrained``: stands in for a hub model."""
    from transformers import BertConfig, BertForSequenceClassification

    from distilkit.data.synthetic import generate
    from distilkit.models.tokenizer import train_wordpiece

    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = train_wordpiece([e.text for e in generate(200, seed=1)], vocab_size=200)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def text_lines_dir(tmp_path) -> Path:
    """A LABEL-SENTENCE data set directory with three classes."""
    from distilkit.data.synthetic import generate

    path = tmp_path / "lines"
    path.mkdir()
    for split, n in (("train", 60), ("dev", 30), ("test", 30)):
        rows = [f"{e.label + (i % 3 == 0)} {e.text}" for i, e in enumerate(generate(n, seed=len(split)))]
        (path / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return path


needs_shared_sst2 = pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 absent")
needs_shared_minilm = pytest.mark.skipif(not MINILM.is_dir(), reason="../shared/models/all-MiniLM-L6-v2 absent")
