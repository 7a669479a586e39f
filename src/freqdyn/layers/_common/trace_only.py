"""A clear ``torch.jit.script`` error for layers that TorchScript cannot compile (they trace and export)."""

from __future__ import annotations


class TraceOnly:
    """Mixin: ``torch.jit.script`` of a model containing this layer fails at once with what to do instead.

    The layers' forwards use Python that TorchScript does not compile (dataclasses, closures, numpy-built
    constants); ``torch.jit.trace``, ``torch.export`` / ONNX and ``torch.compile`` handle them.
    """

    def __prepare_scriptable__(self):  # called by torch.jit.script on every submodule
        raise RuntimeError(
            f"{type(self).__name__} cannot be compiled with torch.jit.script; use torch.jit.trace(model, "
            "example_inputs) (tested, with its default checks), torch.export / torch.onnx.export, or torch.compile"
        )
