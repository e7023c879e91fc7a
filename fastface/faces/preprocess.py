"""Image checks and the front end shared by the face models.

Shapes: images (N, H, W) uint8 0..255 or float 0..1; features X (N, D) with D = H*W
(flattened row-major, as the model boundary expects) or D = n_components after whitening.

Pipeline (each step optional, fitted on training images only, saved with the model):
    as_images        -> float32 (N, H, W) in 0..1, with clear errors for bad input
    augment          -> small shifts and mirror images of the training photos (train only)
    normalize_images -> per-image zero mean, unit standard deviation (removes global
                        brightness and contrast: the first thing lighting changes)
    illumination_normalize -> Tan & Triggs' chain: gamma, difference of Gaussians, contrast
                        equalisation (removes smooth shading from side lights; optional)
    PCAWhitener      -> projection on the top principal components divided by their standard
                        deviations (every direction of face variation gets equal weight)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_images",
    "check_target",
    "normalize_images",
    "augment",
    "illumination_normalize",
    "PCAWhitener",
    "FrontEnd",
]

_BAD_KINDS = {"b": "bool", "c": "complex", "O": "object", "U": "string", "S": "bytes", "V": "void"}


def as_images(images, where="images", *, shape=None, single=False) -> np.ndarray:
    """Validate photos and return float32 (N, H, W) in 0..1.

    uint8 (and other integer dtypes holding 0..255) are divided by 255; floats must already
    lie in 0..1. A list of arrays of different sizes, a wrong dtype, NaN/inf, or a size other
    than `shape` (H, W) is a clear error. `single=True` also accepts one photo (H, W).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{where}: got an empty list of photos; pass at least one")
        sizes = {np.shape(im) for im in images}
        if len(sizes) > 1:
            raise ValueError(
                f"{where}: photos of mixed sizes {sorted(sizes)[:4]}; every photo must have the "
                "same (H, W). Resize them first (load_image_folder(root, size=(64, 64)) does)"
            )
        images = np.stack([np.asarray(im) for im in images])
    arr = np.asarray(images)
    kind = _BAD_KINDS.get(arr.dtype.kind)
    if kind is not None:
        raise TypeError(f"{where}: photos must be uint8 0..255 or float 0..1; got a {kind} array "
                        f"(dtype {arr.dtype}). Convert it, e.g. images.astype(np.uint8)")
    if single and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        want = "(H, W) or (N, H, W)" if single else "(N, H, W)"
        hint = "; for one photo use images[None]" if arr.ndim == 2 else ""
        raise ValueError(f"{where}: expected photos of shape {want}; got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{where}: no photos (N = 0); pass at least one")
    if shape is not None and tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"{where}: photos must be {tuple(shape)} (H, W) like the training photos; "
                         f"got {tuple(arr.shape[1:])}. Resize them to {tuple(shape)} first")
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{where}: integer photos must hold grey levels 0..255; got values "
                             f"from {arr.min()} to {arr.max()}")
        return arr.astype(np.float32) / np.float32(255.0)
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{where}: photos contain NaN or infinity; fix or drop those photos")
    lo, hi = float(out.min()), float(out.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(f"{where}: float photos must lie in 0..1; got values from {lo:.4g} to "
                         f"{hi:.4g}. Divide 0..255 grey levels by 255 (or pass uint8)")
    return np.clip(out, 0.0, 1.0)


def check_target(target, n: int, where="target") -> np.ndarray:
    """Integer labels (N,) matching `n` photos -> int64 array."""
    t = np.asarray(target)
    if t.dtype.kind not in "iuf" or t.dtype.kind == "b":
        raise TypeError(f"{where}: labels must be integers; got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{where}: expected one label per photo, shape ({n},); got shape {t.shape}. "
                         "images and target must have the same length")
    if t.dtype.kind == "f" and not np.all(np.mod(t, 1) == 0):
        raise ValueError(f"{where}: labels must be whole numbers; got fractional values")
    return t.astype(np.int64)


def normalize_images(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-image standardisation: each row (or image) minus its mean, over its std. Same shape."""
    flat = x.reshape(x.shape[0], -1).astype(np.float32, copy=True)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.sqrt((flat * flat).mean(axis=1, keepdims=True)) + np.float32(eps)
    return flat.reshape(x.shape)


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift (N, H, W) by (dy, dx) pixels, repeating the edge rows/columns."""
    n, h, w = images.shape
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return images.copy()
    p = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    return p[:, pad - dy: pad - dy + h, pad - dx: pad - dx + w].copy()


def augment(images: np.ndarray, target: np.ndarray, *, shifts=1, mirror=True):
    """Training copies: every shift in [-shifts, shifts]^2 (pixels), each also mirrored.

    images (N, H, W) float, target (N,) -> ((N*M, H, W), (N*M,)) with
    M = (2*shifts + 1)^2 * (2 if mirror else 1); the originals come first.
    """
    shifts = int(shifts)
    if shifts < 0:
        raise ValueError(f"augment: shifts must be >= 0 pixels; got {shifts}")
    bases = [images, images[:, :, ::-1]] if mirror else [images]
    out, labels = [images], [target]
    for k, base in enumerate(bases):
        for dy in range(-shifts, shifts + 1):
            for dx in range(-shifts, shifts + 1):
                if k == 0 and dy == 0 and dx == 0:
                    continue
                out.append(_shift(base, dy, dx))
                labels.append(target)
    return np.concatenate(out), np.concatenate(labels)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (N, H, W) with reflected borders."""
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    n, h, w = x.shape
    p = np.pad(x, ((0, 0), (r, r), (r, r)), mode="reflect")
    rows = sum(k[i] * p[:, :, i: i + w] for i in range(len(k)))
    return sum(k[i] * rows[:, i: i + h, :] for i in range(len(k)))


def illumination_normalize(images, gamma=0.2, sigma0=1.0, sigma1=8.0, alpha=0.1, tau=10.0) -> np.ndarray:
    """Tan & Triggs (2010) lighting normalisation of (N, H, W) photos in 0..1 -> float32 (N, H, W).

    gamma compression (dark regions gain detail), a difference of Gaussians (sigma0 keeps
    edges, sigma1 removes the smooth shading of side lights), then two-stage contrast
    equalisation and a tanh squash to [-tau, tau].
    """
    x = np.power(np.asarray(images, np.float64) + 1e-3, gamma)
    x = _blur(x, sigma0) - _blur(x, sigma1)
    x /= np.mean(np.abs(x) ** alpha, axis=(1, 2), keepdims=True) ** (1 / alpha) + 1e-12
    x /= np.mean(np.minimum(np.abs(x), tau) ** alpha, axis=(1, 2), keepdims=True) ** (1 / alpha) + 1e-12
    return (tau * np.tanh(x / tau)).astype(np.float32)


class PCAWhitener:
    """Whitening PCA: z = (x - mean) @ components / sqrt(variance + reg * mean variance).

    x (N, D) -> z (N, K). Fitted by SVD of the centred training rows; `reg` shrinks the
    smallest components (pure whitening amplifies noise directions).
    """

    def __init__(self, n_components=100, reg=0.0):
        self.n_components = int(n_components)
        self.reg = float(reg)
        self.mean = self.components = self.scale = None

    def fit(self, x: np.ndarray) -> "PCAWhitener":
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        k = min(self.n_components, n - 1, d)
        if k < 1:
            raise ValueError(f"PCAWhitener: need at least 2 training rows; got {n}")
        self.mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        var = s[:k] ** 2 / (n - 1)
        self.components = vt[:k].T.astype(np.float32)
        self.scale = (1.0 / np.sqrt(var + self.reg * var.mean() + 1e-12)).astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) @ self.components) * self.scale

    @property
    def n_out(self) -> int:
        return int(self.components.shape[1])


class FrontEnd:
    """Photos -> feature rows for the network: checks, per-image normalisation, whitening PCA.

    images (N, H, W) -> X (N, D), float32. `normalize` (bool) and `whiten` (number of
    components, 0 = off) are fitted on training photos by :meth:`fit`; `arrays()`/`from_arrays`
    round-trip it through fastface.io (no pickle).
    """

    def __init__(self, normalize=True, whiten=0, reg=0.0, illumination=False):
        self.illumination = bool(illumination)
        self.normalize = bool(normalize)
        self.whiten = int(whiten)
        self.reg = float(reg)
        self.shape = None
        self.pca = None
        self.mu = self.sd = None  # feature standardisation when not whitening

    def _rows(self, images: np.ndarray) -> np.ndarray:
        if self.illumination:
            images = illumination_normalize(images)
        x = images.reshape(images.shape[0], -1)
        return normalize_images(x) if self.normalize else x.astype(np.float32)

    def fit(self, images: np.ndarray) -> "FrontEnd":
        """images float32 (N, H, W) already checked by as_images."""
        self.shape = tuple(int(s) for s in images.shape[1:])
        x = self._rows(images)
        if self.whiten > 0:
            self.pca = PCAWhitener(self.whiten, self.reg).fit(x)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        x = self._rows(images)
        return self.pca.transform(x) if self.pca is not None else x

    @property
    def n_out(self) -> int:
        return self.pca.n_out if self.pca is not None else int(np.prod(self.shape))

    def config(self) -> dict:
        return {"normalize": self.normalize, "whiten": self.whiten, "reg": self.reg,
                "illumination": self.illumination,
                "shape": list(self.shape) if self.shape else None}

    def arrays(self, prefix="fe_") -> dict:
        if self.pca is None:
            return {}
        return {prefix + "mean": self.pca.mean, prefix + "components": self.pca.components,
                prefix + "scale": self.pca.scale}

    @classmethod
    def from_arrays(cls, config: dict, arrays: dict, prefix="fe_") -> "FrontEnd":
        fe = cls(config["normalize"], config["whiten"], config.get("reg", 0.0), config.get("illumination", False))
        fe.shape = tuple(config["shape"])
        if fe.whiten > 0:
            fe.pca = PCAWhitener(fe.whiten, fe.reg)
            fe.pca.mean = arrays[prefix + "mean"]
            fe.pca.components = arrays[prefix + "components"]
            fe.pca.scale = arrays[prefix + "scale"]
        return fe
