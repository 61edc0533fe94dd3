"""Measurements: accuracy, size, latency — of the teacher and of the student, the same way."""
