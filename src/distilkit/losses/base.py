"""The base every loss shares, and the contract a loss of your own follows.

A loss is an ``nn.Module`` subclassing :class:`DistillLoss`, named by the ``loss`` group's
``_target_`` (its config keys are its constructor's arguments). The pipeline and the
LightningModule use exactly this of it:

``needs`` (a :class:`~distilkit.losses.outputs.Needs` value; class or instance attribute):
    what it needs of the teacher. ``NOTHING``: no teacher (``teacher`` is ``None``); ``LOGITS``
    (default): the teacher's logits, served from the soft-label store with no teacher forward pass;
    ``HIDDEN``: the teacher runs online and both models return hidden states; ``HIDDEN_AND_ATTENTIONS``:
    attention maps too (before attention dropout, see :mod:`distilkit.losses.attention`). A student
    that returns only logits (a plain ``nn.Module``) can train only with ``NOTHING`` or ``LOGITS``.
``bind(student_config, teacher_config)``:
    called once both models exist, and again after the pruner's and quantizer's ``prepare``
    (``pruner=width`` changes the student's widths), before the optimizer is built; check shapes
    (raise :class:`distilkit.errors.ConfigError` naming your key) and build learned parts here
    (parameters of the loss are trained with the student's). A second call with the same shapes
    must keep what the first built.
``forward(student, teacher, labels, attention_mask) -> dict``:
    ``student`` and ``teacher`` are :class:`~distilkit.losses.outputs.Outputs` (``logits``
    ``[batch, classes]``; ``hidden_states``/``attentions`` when ``needs`` asks for them), ``labels``
    ``[batch]``, ``attention_mask`` ``[batch, seq]`` (1 for real tokens). Return ``{"loss": total}``
    plus any scalar parts; each part is logged as ``train/<name>``.
"""

from __future__ import annotations

from torch import nn

from distilkit.losses.outputs import Needs


class DistillLoss(nn.Module):
    needs = Needs.LOGITS

    def bind(self, student_config, teacher_config) -> None:
        """Called once both models exist, before training: check shapes, build learned parts."""
