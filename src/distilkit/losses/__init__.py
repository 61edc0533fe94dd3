"""Distillation losses: pure modules over tensors, ``loss(student, teacher, labels) -> {"loss": ..., parts}``."""

from distilkit.losses.ce import CrossEntropy
from distilkit.losses.distilbert import DistilBertLoss
from distilkit.losses.intermediate import IntermediateLoss
from distilkit.losses.kd import KDLoss, kd_term
from distilkit.losses.outputs import Outputs

__all__ = ["Outputs", "CrossEntropy", "KDLoss", "kd_term", "DistilBertLoss", "IntermediateLoss"]
