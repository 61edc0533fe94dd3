"""Distillation losses: pure modules over tensors, ``loss(student, teacher, labels, attention_mask) -> {"loss": ..., parts}``.

Your own loss: subclass :class:`DistillLoss` (contract in :mod:`distilkit.losses.base`) and name it in
the ``loss`` group's ``_target_``.
"""

from distilkit.losses.base import DistillLoss
from distilkit.losses.ce import CrossEntropy
from distilkit.losses.distilbert import DistilBertLoss
from distilkit.losses.intermediate import IntermediateLoss
from distilkit.losses.kd import KDLoss, kd_term
from distilkit.losses.outputs import Needs, Outputs

__all__ = ["DistillLoss", "Needs", "Outputs", "CrossEntropy", "KDLoss", "kd_term", "DistilBertLoss", "IntermediateLoss"]
