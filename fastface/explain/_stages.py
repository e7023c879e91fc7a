"""Input stages in front of the dense layers, so explanations are taken w.r.t. raw pixels.

Dimensions:
    B  examples     U  explained units     D_in / D_out  a stage's input / output width
    forward: x (B, D_in) -> y (B, D_out);  vjp: G (B, U, D_out) -> (B, U, D_in)
    pixels_T: P (D_out, U) -> (D_in, U), the transpose of a *linear* stage applied to unit
    templates (unit_images); None for a non-linear stage (it is skipped there, documented).

Stages (applied in this order to a raw input row):
    PerImageNormalize  y = (x - mean(x)) / (rms(x - mean(x)) + eps)     (face tasks' front end)
    Whiten             y = ((x - mu) @ C) * s     C (D_in, K), s (K,)    (face tasks' PCA)
    Standardize        y = (x - mean) / std       per feature           (Sequential(normalize="standard"))

The face-task front end is read from the object's ``front_end`` / ``frontend`` attribute
(fastface.faces.preprocess.FrontEnd: ``.normalize``, ``.pca.mean/.components/.scale``).
"""

from __future__ import annotations

import numpy as np

from .. import ops

__all__ = ["PerImageNormalize", "Whiten", "Standardize", "stages_of"]


class PerImageNormalize:
    """Per-row standardisation (non-linear): y = c / (r + eps), c = x - mean(x), r = rms(c).

    VJP: dL/dx_j = (g_j - mean(g)) / s - (g . c) c_j / (D r s^2), s = r + eps.
    """

    linear = False

    def __init__(self, n: int, eps: float = 1e-6):
        self.n_in = self.n_out = int(n)
        self.eps = float(eps)

    def forward(self, x, backend=None):
        c = x - x.mean(axis=1, keepdims=True)
        r = np.sqrt((c * c).mean(axis=1, keepdims=True))
        return (c / (r + self.eps)).astype(x.dtype, copy=False)

    def vjp(self, x, G, backend=None):
        B, U, D = G.shape
        c = (x - x.mean(axis=1, keepdims=True)).astype(np.float64)  # (B, D)
        r = np.sqrt((c * c).mean(axis=1))  # (B,)
        s = r + self.eps
        g = G.astype(np.float64)
        gc = np.einsum("bud,bd->bu", g, c)  # (B, U)
        out = (g - g.mean(axis=2, keepdims=True)) / s[:, None, None]
        out -= (gc / (D * np.maximum(r, 1e-300) * s * s)[:, None])[:, :, None] * c[:, None, :]
        return out.astype(G.dtype, copy=False)

    def pixels_T(self, P, backend=None):
        return None


class Whiten:
    """Linear projection y = ((x - mu) @ C) * s; C (D_in, K), s (K,)."""

    linear = True

    def __init__(self, mu, C, s, dtype):
        self.mu = np.asarray(mu, dtype=dtype).reshape(-1)
        self.C = np.asarray(C, dtype=dtype)
        self.s = np.asarray(s, dtype=dtype).reshape(-1)
        self.n_in, self.n_out = self.C.shape

    def forward(self, x, backend=None):
        return ops.matmul(x - self.mu, self.C, backend=backend) * self.s

    def vjp(self, x, G, backend=None):
        B, U, K = G.shape
        return ops.matmul((G * self.s).reshape(B * U, K), self.C.T, backend=backend).reshape(B, U, -1)

    def pixels_T(self, P, backend=None):
        return ops.matmul(self.C, P * self.s[:, None], backend=backend)


class Standardize:
    """Per-feature y = (x - mean) / std."""

    linear = True

    def __init__(self, mean, std):
        self.mean, self.std = mean, std
        self.n_in = self.n_out = mean.shape[0]

    def forward(self, x, backend=None):
        return ((x - self.mean) / self.std).astype(x.dtype, copy=False)

    def vjp(self, x, G, backend=None):
        return G / self.std

    def pixels_T(self, P, backend=None):
        return P / self.std[:, None]


def _front_end_stages(obj, dtype):
    fe = getattr(obj, "front_end", None) or getattr(obj, "frontend", None)
    if fe is None:
        return []
    stages = []
    shape = getattr(fe, "shape", None)
    pca = getattr(fe, "pca", None)
    n = None
    if shape:
        n = int(np.prod(shape))
    elif pca is not None and getattr(pca, "components", None) is not None:
        n = int(np.asarray(pca.components).shape[0])
    if getattr(fe, "normalize", False) and n is not None:
        stages.append(PerImageNormalize(n))
    if pca is not None and getattr(pca, "components", None) is not None:
        stages.append(Whiten(pca.mean, pca.components, pca.scale, dtype))
    return stages


def stages_of(obj, seq, dtype, first_width, where):
    """The input stages of a model object (a face task's front end, then the Sequential's own
    standardisation), checked to chain into a first layer of `first_width` inputs."""
    stages = _front_end_stages(obj, dtype) if obj is not seq else []
    mean = getattr(seq, "input_mean", None)
    std = getattr(seq, "input_std", None)
    if mean is None:  # fastface.model keeps its fitted standardisation here
        mean, std = getattr(seq, "_mean", None), getattr(seq, "_std", None)
    if mean is not None and std is not None:
        stages.append(Standardize(np.asarray(mean, dtype=dtype).reshape(-1),
                                  np.asarray(std, dtype=dtype).reshape(-1)))
    widths = [s.n_in for s in stages] + [first_width]
    for k, stage in enumerate(stages):
        if stage.n_out != widths[k + 1]:
            raise ValueError(
                f"{where}: the model's input stage {type(stage).__name__} gives {stage.n_out} "
                f"features but the next step takes {widths[k + 1]}; the model file is inconsistent"
            )
    return stages
