"""Tasks: what differs between sequence classification and causal-LM distillation.

The ``task`` config group names one of these objects; the pipeline's stages call it and hold no
task-specific code: which model class builds teacher and student, how the teacher is built and
checked, what teacher output is stored, what the loss receives (the LightningModule), which metrics
are measured and how the result table looks.
"""

from distilkit.tasks.base import Task, serves
from distilkit.tasks.causal_lm import CausalLM
from distilkit.tasks.classification import Classification

__all__ = ["Task", "serves", "Classification", "CausalLM"]
