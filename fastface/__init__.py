"""fastface: hand-written kernels for small dense networks, built for face recognition.

    import fastface as ff
    ff.available_backends()                 # ['numpy', 'numba', 'c', ...]
    a = ff.ops.dense_forward(x, W, b, "sigmoid")
    model = ff.Sequential([ff.Dense(25, "sigmoid"), ff.Dense(1, "sigmoid")], input_dim=400)

Submodules load on first use: ``ff.ops``, ``ff.faces``, ``ff.explain``, ``ff.model``.
"""

from __future__ import annotations

import importlib

from .backends import BackendUnavailableError, available_backends, unavailable_backends

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "available_backends",
    "unavailable_backends",
    "BackendUnavailableError",
    "ops",
    "losses",
    "activations",
    "Dense",
    "Sequential",
    "load_model",
    "faces",
    "explain",
]

_SUBMODULES = {"ops", "losses", "activations", "config", "model", "optim", "faces", "explain", "backends"}
_FROM_MODEL = {"Dense", "Sequential", "load_model", "History"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_MODEL:
        return getattr(importlib.import_module(".model", __name__), name)
    raise AttributeError(f"module 'fastface' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | _FROM_MODEL)
