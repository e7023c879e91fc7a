"""Shared test setup.

- Without a GPU, Numba's CUDA simulator is switched on *before numba is imported*, so the
  cuda backend's kernels run in CI on small shapes; on a machine with a GPU the very same
  tests run on the device.
- At least two Numba threads, so that the two-worker fused epoch runs on any machine.
- Real face data: ../shared/data next to the repository (or $FASTFACE_DATA). Tests that need
  it skip with the reason when it is absent (a user's clone has no shared/ folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastface._device import has_nvidia_gpu  # imports no numba

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not has_nvidia_gpu():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
# The two-worker fused epoch (fastface._fused_pair) is tested on two Numba threads even where
# CI has a single core (they then take turns: slower, the same results)
if (os.cpu_count() or 1) < 2:
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """Folder with olivetti_faces.npz / yale_faces.npz, or None."""
    for candidate in (os.environ.get("FASTFACE_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate, "olivetti_faces.npz").is_file():
            return Path(candidate)
    return None


def _load_npz(name: str):
    folder = data_dir()
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"{name} not found: put it in ../shared/data or set $FASTFACE_DATA")
    with np.load(folder / name, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def olivetti_npz():
    """The Olivetti faces as a dict: images uint8 (400, 64, 64), target (400,)."""
    return _load_npz("olivetti_faces.npz")


@pytest.fixture(scope="session")
def yale_npz():
    """The Yale faces as a dict: images uint8 (150, 64, 64), target (150,), condition."""
    return _load_npz("yale_faces.npz")
