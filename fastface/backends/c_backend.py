"""C backend (placeholder until csrc/ lands): reports itself unavailable."""

from . import BackendUnavailableError


def check() -> None:
    raise BackendUnavailableError("the C extension is not part of this build yet")
