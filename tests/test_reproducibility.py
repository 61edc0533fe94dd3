"""Same command, same seed -> the same student, whether the teacher came from the cache or was trained."""

from __future__ import annotations

import pytest

from distilkit.pipeline import run
from distilkit.seeding import stage_seed

TIMING = ("latency", "throughput", "speedup", "threads", "samples")


def model_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Everything but timings: accuracies, NLL, KL to the teacher, agreement, sizes."""
    return {k: v for k, v in metrics.items() if not any(t in k for t in TIMING)}


def test_stage_seeds_are_distinct_and_stable():
    assert stage_seed(0, "student.fit") == stage_seed(0, "student.fit")
    assert len({stage_seed(s, stage) for s in (0, 1) for stage in ("teacher", "student", "student.fit")}) == 6


def test_cold_and_warm_cache_and_a_rerun_give_identical_students(compose_cfg, tmp_path):
    cold_cache, other_cache = tmp_path / "cache_a", tmp_path / "cache_b"
    cold = run(compose_cfg(f"paths.cache_dir={cold_cache}"), {})
    warm = run(compose_cfg(f"paths.cache_dir={cold_cache}"), {})  # teacher and logits from the cache
    again = run(compose_cfg(f"paths.cache_dir={other_cache}"), {})  # the same command, cold again
    assert (cold_cache / "teachers").is_dir() and len(list((cold_cache / "teachers").iterdir())) == 1
    cold, warm, again = model_metrics(cold), model_metrics(warm), model_metrics(again)
    assert {"student/dev_nll", "student/dev_kl_to_teacher", "student/dev_acc", "deploy/onnx_size_mb"} <= set(cold)
    assert warm == cold
    assert again == cold


def test_another_seed_gives_another_student(compose_cfg, shared_cache_dir):
    """The comparison above can fail: the student's NLL moves with the seed."""
    a = run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", "teacher.finetune.max_epochs=0"), {})
    b = run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", "teacher.finetune.max_epochs=0", "seed=1"), {})
    assert a["student/dev_nll"] != pytest.approx(b["student/dev_nll"], abs=1e-9)


def test_a_pinned_teacher_seed_shares_one_teacher_across_student_seeds(compose_cfg, tmp_path):
    """teacher_seed=0 with seed=1 loads seed 0's cached teacher (no second fine-tune) and trains another student;
    unpinned, seed 1 fine-tunes its own teacher."""
    cache = tmp_path / "cache"

    def teachers() -> list[str]:
        return sorted(p.name for p in (cache / "teachers").iterdir())

    a = run(compose_cfg(f"paths.cache_dir={cache}"), {})
    first = teachers()
    b = run(compose_cfg(f"paths.cache_dir={cache}", "seed=1", "teacher_seed=0", "data.seed=0"), {})
    assert teachers() == first and len(first) == 1
    assert b["teacher/dev_acc"] == a["teacher/dev_acc"] and b["teacher/params"] == a["teacher/params"]
    assert b["student/dev_nll"] != pytest.approx(a["student/dev_nll"], abs=1e-9)  # the student's seed is 1
    run(compose_cfg(f"paths.cache_dir={cache}", "seed=1", "data.seed=0"), {})
    assert len(teachers()) == 2 and set(first) < set(teachers())


@pytest.mark.parametrize("value", ["1.5", "true", "abc"])
def test_teacher_seed_must_be_an_integer_or_null(compose_cfg, value):
    from distilkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^teacher_seed: must be an integer or null"):
        run(compose_cfg(f"teacher_seed={value}"), {})


def test_scratch_tokenizer_is_the_same_for_the_same_texts():
    from distilkit.data.synthetic import generate
    from distilkit.models.tokenizer import train_wordpiece

    texts = [e.text for e in generate(300, seed=3)]
    first, second = train_wordpiece(texts, 60), train_wordpiece(list(texts), 60)
    assert first.get_vocab() == second.get_vocab() and len(first) == 60
    assert first(texts[:5])["input_ids"] == second(texts[:5])["input_ids"]
    assert "[UNK]" not in first.tokenize(texts[0])  # every seen word can be spelled
