"""``hardware.compile``: the student's forward compiled with ``torch.compile`` for the fit."""

from __future__ import annotations

import lightning as L


class CompileStudent(L.Callback):
    """Compiles the student in place (``nn.Module.compile``: its ``__call__`` goes through
    ``torch.compile``, its parameters, ``state_dict`` and checkpoints stay those of the plain module)
    once the pruner and quantizer have prepared it (``on_fit_start`` comes after the module's
    ``setup("fit")``), for the training and validation steps of the fit; undone at the end of the fit,
    so export and measurement see the plain student. Batches are padded to their longest row, so
    shapes vary: ``dynamic=None`` lets torch mark the sequence length dynamic after the first recompile."""

    def __init__(self, **options):
        self.options = options  # torch.compile's arguments (backend, mode, dynamic, ...)

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.student.compile(**self.options)

    def on_fit_end(self, trainer, pl_module) -> None:
        pl_module.student._compiled_call_impl = None  # nn.Module.compile's slot; no public way back
