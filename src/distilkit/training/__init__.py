"""Training: the Lightning module, the teacher fine-tune cache and the teacher-logit store."""
