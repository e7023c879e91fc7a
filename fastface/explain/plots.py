"""PNG grids of maps: diverging colour map centred at zero, colour bar, optional photo overlay.

Dimensions:
    K  panels      H, W  image height and width
    images (K, H, W), or (K, H*W) with shape=(H, W), or one (H, W) map

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global backend
switch, safe in threads and on machines without a display). matplotlib is an optional extra
(``pip install fastface[plots]``); without it save_grid raises MissingDependencyError.
Files are written atomically: a temporary file in the same folder, then os.replace.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

__all__ = ["save_grid", "MissingDependencyError"]


class MissingDependencyError(ImportError):
    """An optional extra is not installed; the message says which and how to get it."""


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise MissingDependencyError(
            f"save_grid needs matplotlib ({exc}); install it with: pip install fastface[plots]"
        ) from None
    return Figure, FigureCanvasAgg, Normalize, ScalarMappable


def _as_panels(images, shape, what):
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"save_grid: {what} must be a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 2 and shape is None:
        arr = arr[None]
    if arr.ndim == 1:
        arr = arr[None]
    if shape is not None:
        try:
            H, W = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(f"save_grid: shape must be a pair (H, W); got {shape!r}") from None
        if arr.ndim != 2 or arr.shape[1] != H * W:
            raise ValueError(
                f"save_grid: with shape={(H, W)}, {what} must be (K, {H * W}) flattened maps; "
                f"got shape {arr.shape}"
            )
        arr = arr.reshape(arr.shape[0], H, W)
    if arr.ndim != 3 or arr.shape[0] == 0 or 0 in arr.shape[1:]:
        raise ValueError(
            f"save_grid: {what} must be (K, H, W) maps, one (H, W) map, or (K, H*W) with "
            f"shape=(H, W); got shape {np.shape(images)}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"save_grid: {what} contain NaN or inf")
    return arr


def save_grid(images, path, *, titles=None, shape=None, ncols=None, overlay=None, alpha=0.6,
              cmap="RdBu_r", centered=True, shared_scale=True, colorbar=True, suptitle=None,
              panel_size=1.8, dpi=100):
    """Write a grid of maps to a PNG file and return its path.

    images        (K, H, W) maps (or one (H, W), or (K, H*W) with shape=(H, W))
    titles        K strings, one per panel (default: none)
    ncols         panels per row (default: about sqrt(K), at most 8)
    overlay       a photo (H, W) under every panel, or (K, H, W) one per panel, drawn in grey
                  with the map on top; each map pixel's opacity is alpha * sqrt(|v| / vmax),
                  so the photo shows through where the map is near zero
    cmap          a diverging colour map; with centered=True (default) the scale is symmetric
                  around 0 (blue negative, white zero, red positive for 'RdBu_r')
    shared_scale  one colour scale (and one colour bar) for every panel (default), or one per
                  panel (each with its own bar) when False
    """
    Figure, FigureCanvasAgg, Normalize, ScalarMappable = _matplotlib()
    panels = _as_panels(images, shape, "images")
    K, H, W = panels.shape
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"save_grid: writes PNG files; the path must end in .png, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_grid: folder {folder!r} does not exist; create it first")
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != K:
            raise ValueError(f"save_grid: got {len(titles)} titles for {K} panels; give one per panel")
    photos = None
    if overlay is not None:
        photos = _as_panels(overlay, None, "overlay")
        if photos.shape[1:] != (H, W) or photos.shape[0] not in (1, K):
            raise ValueError(
                f"save_grid: overlay must be one photo (H, W) = ({H}, {W}) or {K} photos; "
                f"got shape {np.shape(overlay)}"
            )
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"save_grid: alpha must be in [0, 1]; got {alpha!r}")
    if ncols is None:
        ncols = min(K, 8, max(1, math.ceil(math.sqrt(K))))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"save_grid: ncols must be an integer >= 1; got {ncols!r}")
    ncols = min(int(ncols), K)
    nrows = math.ceil(K / ncols)

    def norm_for(values):
        if centered:
            m = float(np.max(np.abs(values))) or 1.0
            return Normalize(vmin=-m, vmax=m)
        lo, hi = float(values.min()), float(values.max())
        return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)

    shared = norm_for(panels) if shared_scale else None
    extra = (0.6 if shared_scale else 0.45 * ncols) if colorbar else 0.0
    title_h = 0.25 if titles else 0.0
    fig = Figure(
        figsize=(ncols * panel_size * W / max(H, W) + extra,
                 nrows * (panel_size * H / max(H, W) + title_h) + (0.4 if suptitle else 0.0)),
        dpi=dpi,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    mappable = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])  # no tick artists at all: much faster layout than hidden ticks
        ax.set_yticks([])
        ax.set_axis_off()
        if k >= K:
            continue
        norm = shared if shared_scale else norm_for(panels[k])
        if photos is not None:
            photo = photos[k if photos.shape[0] == K else 0]
            ax.imshow(photo, cmap="gray", interpolation="nearest")
            span = max(abs(norm.vmin), abs(norm.vmax)) or 1.0
            opacity = float(alpha) * np.sqrt(np.clip(np.abs(panels[k]) / span, 0.0, 1.0))
            ax.imshow(panels[k], cmap=cmap, norm=norm, alpha=opacity, interpolation="nearest")
        else:
            ax.imshow(panels[k], cmap=cmap, norm=norm, interpolation="nearest")
        mappable = ScalarMappable(norm=norm, cmap=cmap)  # colour bars at full opacity
        if titles:
            ax.set_title(titles[k], fontsize=8)
        if colorbar and not shared_scale:
            cb = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
            cb.ax.tick_params(labelsize=6)
    if colorbar and shared_scale and mappable is not None:
        cb = fig.colorbar(mappable, ax=axes, fraction=0.03, pad=0.02, shrink=0.9)
        cb.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(str(suptitle), fontsize=10)
    fd, tmp = tempfile.mkstemp(prefix=".fastface-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
