"""Your own student, named by the ``student`` group's ``_target_``; no change to the package.

The ``_target_`` may name:

1. a *spec*: an object with ``build(teacher) -> model`` (``DistilStudent`` and ``ScratchStudent`` are
   specs); its config keys are its constructor's arguments;
2. a model class or factory, with ``_partial_: true``: :func:`build_student` calls it with the
   teacher's ``vocab_size=`` and ``num_labels=`` (keywords) on top of its configured keys.

The model is either a Hugging Face ``PreTrainedModel`` for sequence classification (used as is: it has
``config``, returns ``.logits``, saves with ``save_pretrained``, and can serve hidden states and
attention maps to the ``distilbert``/``intermediate`` losses), or a plain ``nn.Module`` whose
``forward(input_ids, attention_mask)`` returns logits ``[batch, num_labels]``. A plain module is
wrapped in :class:`LogitsStudent`, which gives it what the pipeline uses. Students read the
teacher's tokenization, so they share its vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_model
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from distilkit.errors import ConfigError
from distilkit.losses.outputs import Needs

WEIGHTS = "model.safetensors"


class LogitsStudent(nn.Module):
    """A plain ``nn.Module`` classifier given what the pipeline uses of a student.

    ``config``: ``num_labels``, ``vocab_size``, ``max_position_embeddings`` (the teacher's; the
    student reads the same token ids). ``forward`` returns a ``SequenceClassifierOutput`` (``.logits``;
    exported to ONNX as the output ``logits``). ``save_pretrained(dir)`` writes the module's own
    state dict (no wrapper prefix) to ``model.safetensors`` and ``config.json`` naming its class:
    reload with ``safetensors.torch.load_model(YourModule(...), dir / "model.safetensors")``.
    The module sits at ``.model``, so its submodules' full names start with ``model.`` (e.g. in
    ``quantizer.keep_fp32``).
    """

    def __init__(self, model: nn.Module, teacher_config: PreTrainedConfig):
        super().__init__()
        self.model = model
        self.config = PreTrainedConfig(
            num_labels=teacher_config.num_labels,
            vocab_size=teacher_config.vocab_size,
            max_position_embeddings=teacher_config.max_position_embeddings,
        )
        self._check_logits()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, **_) -> SequenceClassifierOutput:
        if output_hidden_states or output_attentions:
            raise ValueError(f"{self.name} returns logits only: no hidden states or attention maps")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return SequenceClassifierOutput(logits=self.model(input_ids=input_ids, attention_mask=attention_mask))

    @property
    def name(self) -> str:
        return f"{type(self.model).__module__}.{type(self.model).__qualname__}"

    def _check_logits(self) -> None:
        """One forward pass on a dummy batch: logits must be a [batch, num_labels] tensor."""
        ids = torch.ones((2, min(8, self.config.max_position_embeddings)), dtype=torch.long)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        finally:
            self.model.train(was_training)
        expected = (2, self.config.num_labels)
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        if got != expected:
            raise ConfigError(
                "_target_",
                f"{self.name}(input_ids, attention_mask) must return logits [batch, num_labels={self.config.num_labels}], "
                f"got {got} for a batch of 2",
            )

    def save_pretrained(self, directory: str | Path, **_) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(directory / WEIGHTS))
        config = {"distilkit_model": self.name, **self.config.to_diff_dict()}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def build_student(spec, teacher: PreTrainedModel) -> nn.Module:
    """The student from the ``student`` group's object: ``spec.build(teacher)``, or ``spec(vocab_size=, num_labels=)``
    for a class/factory; a plain ``nn.Module`` comes back wrapped in :class:`LogitsStudent`."""
    if hasattr(spec, "build"):
        model = spec.build(teacher)
    elif isinstance(spec, nn.Module):
        raise ConfigError(
            "_target_",
            f"{type(spec).__name__} was built without the teacher's vocab_size and num_labels: add _partial_: true "
            "to the student config (or give it a build(teacher) method)",
        )
    elif callable(spec):
        model = spec(vocab_size=teacher.config.vocab_size, num_labels=teacher.config.num_labels)
    else:
        raise ConfigError("_target_", f"{type(spec).__name__} is neither a spec with build(teacher) nor a model class/factory")
    if isinstance(model, PreTrainedModel):
        return model
    if isinstance(model, nn.Module):
        return LogitsStudent(model, teacher.config)
    raise ConfigError("_target_", f"built a {type(model).__name__}, expected an nn.Module")


def check_serves(student: nn.Module, needs: str) -> None:
    """``ConfigError`` (key ``loss``) when the loss needs hidden states or attentions the student does not return."""
    if isinstance(student, LogitsStudent) and needs in (Needs.HIDDEN, Needs.HIDDEN_AND_ATTENTIONS):
        raise ConfigError(
            "loss",
            f"needs the student's hidden states, but {student.name} returns logits only: use a loss that needs "
            "the teacher's logits at most (kd, ce, or your own with needs=Needs.LOGITS)",
        )
