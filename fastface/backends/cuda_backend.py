"""CUDA backend (placeholder until it lands): reports itself unavailable."""

from . import BackendUnavailableError


def check() -> None:
    raise BackendUnavailableError("the CUDA kernels are not part of this build yet")
