"""The backend registry: one name -> one module, same function names in each.

Every backend module exposes, with identical signatures (arrays already validated by
:mod:`fastface.ops`: float32 or float64, one dtype per call, shapes checked, N >= 1):

    matmul(a, b)                          a (M, K), b (K, N)            -> c (M, N)
    sigmoid(z)                            z (M, N)                      -> a (M, N)
    dense_forward(x, W, b, activation)    x (N, IN), W (IN, OUT), b (OUT,) -> a (N, OUT)
    dense_backward(x, W, a, da, activation)                             -> dx (N, IN), dW (IN, OUT), db (OUT,)

and a ``check()`` function that raises :class:`BackendUnavailableError` with the reason when
the backend cannot run on this machine (no compiler at install time, no GPU nor simulator...).

Nothing outside this module names a backend module; callers use :func:`get`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "available_backends",
    "unavailable_backends",
    "get",
]


class BackendUnavailableError(RuntimeError):
    """A known backend that cannot run here; the message says why and what to do."""


# name -> module path. Order matters: it is the order `available_backends()` reports.
BACKENDS: dict[str, str] = {
    "numpy": "fastface.backends.reference",
    "numba": "fastface.backends.numba_backend",
    "c": "fastface.backends.c_backend",
    "cuda": "fastface.backends.cuda_backend",
}

_loaded: dict[str, ModuleType] = {}
_failed: dict[str, str] = {}


def _load(name: str) -> ModuleType:
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        raise BackendUnavailableError(_failed[name])
    try:
        module = importlib.import_module(BACKENDS[name])
        module.check()
    except BackendUnavailableError as exc:
        _failed[name] = f"backend {name!r} is unavailable: {exc}"
        raise BackendUnavailableError(_failed[name]) from None
    except ImportError as exc:
        _failed[name] = f"backend {name!r} is unavailable: {exc}"
        raise BackendUnavailableError(_failed[name]) from None
    _loaded[name] = module
    return module


def get(name: str) -> ModuleType:
    """The backend module called `name`.

    Raises ValueError for an unknown name (listing the valid ones) and
    BackendUnavailableError, with the reason, for a known one that cannot run here.
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; expected one of {sorted(BACKENDS)} "
            f"(available here: {available_backends()}), or None to let fastface choose"
        )
    return _load(name)


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, e.g. ['numpy', 'numba', 'c']."""
    names = []
    for name in BACKENDS:
        try:
            _load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def unavailable_backends() -> dict[str, str]:
    """{name: reason} for every known backend that cannot run here."""
    available_backends()
    return {name: _failed[name] for name in BACKENDS if name in _failed}
