"""Numba backend (placeholder until it lands): reports itself unavailable."""

from . import BackendUnavailableError


def check() -> None:
    raise BackendUnavailableError("the numba kernels are not part of this build yet")
