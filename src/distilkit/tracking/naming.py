"""A run's name and description: what was chosen, in a few words, and the command that ran it.

    minilm→distil[3] kd T=4 a=0.5 +qat_int8 +heads amount=0.5

The name is built from the group choices (teacher → student[depth], loss, then every quantizer or
pruner that is not ``none``), each followed by its group's overrides (``T=4``, ``a=0.5``), then the
other overrides (``trainer.ep=1``, ``seed=1``); overrides that only say where things are written or
how they are measured are left out, and so are model and data paths (the group choices name them) and
``student.num_layers`` when the depth is shown. Numbers a sampler drew print in 4 significant digits
(``T=3.709``); the exact values are the run's params and its command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

SHORT = {"alpha": "a", "num_layers": "L", "max_epochs": "ep"}
QUIET_PREFIXES = ("paths.", "tracking.", "callbacks.", "hydra.", "hardware.measure.", "data.path", "teacher.name_or_path",
                  "student.name_or_path")
DEFAULT_OFF = "none"


def _short(key: str) -> str:
    """``loss.alpha`` -> ``a`` inside its group's words; ``teacher.finetune.max_epochs`` -> ``finetune.ep``."""
    head, _, last = key.partition(".")[2].rpartition(".")
    return f"{head}.{SHORT.get(last, last)}" if head else SHORT.get(last, last)


def _value(text: str) -> str:
    """``3.709488999964027`` -> ``3.709``; anything that is not a decimal number as written."""
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.4g}" if "." in text and len(text) > 6 else text


def run_name(choices: Mapping[str, str], overrides: Sequence[str], student_layers: int | None = None) -> str:
    """``teacher→student[depth] loss k=v ... +quantizer +pruner``; data, when not the default, leads."""
    keyed = [o.lstrip("+~").partition("=") for o in overrides]
    plain = [(k, v) for k, sep, v in keyed if sep and "." in k and not k.startswith(QUIET_PREFIXES)
             and not (student_layers and k == "student.num_layers")]  # shown as the depth
    by_group: dict[str, list[str]] = {}
    for key, value in plain:
        by_group.setdefault(key.split(".", 1)[0], []).append(f"{_short(key)}={_value(value)}")
    depth = f"[{student_layers}]" if student_layers else ""
    parts = [f"{choices.get('teacher', 'teacher')}→{choices.get('student', 'student')}{depth}", *by_group.pop("teacher", []),
             *by_group.pop("student", []), choices.get("loss", "loss"), *by_group.pop("loss", [])]
    for group in ("quantizer", "pruner", "augment", "averaging"):
        option = choices.get(group, DEFAULT_OFF)
        if option != DEFAULT_OFF:
            parts += [f"+{option}", *by_group.pop(group, [])]
        by_group.pop(group, None)
    data = choices.get("data")
    lead = [f"{data}:"] if data and data != "synthetic" else []
    rest = [f"{group}.{item}" for group, items in by_group.items() for item in items]
    rest += [f"{k}={v}" for k, sep, v in keyed if sep and "." not in k and k not in choices]  # seed=1
    return " ".join([*lead, *parts, *rest])


def command_line(overrides: Sequence[str]) -> str:
    """``python -m train`` with ``overrides``, quoted as a shell would need them."""
    return " ".join(["python -m train", *(shlex.quote(o) for o in overrides)])
