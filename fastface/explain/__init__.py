"""Explain what a dense network learned: unit images, exact saliency, attribution maps, PNG grids.

    import fastface as ff
    ff.explain.unit_images(model, layer=1, shape=(64, 64))   # (units, 64, 64) incoming weights
    ff.explain.unit_images(model, layer=2)                    # W1 @ W2 columns as images
    ff.explain.maximize_unit(model, layer=2, unit=3)          # input of bounded norm exciting it most
    ff.explain.saliency(model, x, layer=2)                    # (units, IN) signed d a2[j] / d x, one pass
    ff.explain.saliency(model, x, layer=2, unit=3)            # (IN,)
    ff.explain.smoothgrad(model, x, layer=2, unit=3)
    ff.explain.integrated_gradients(model, x, layer=-1, unit=0, return_gap=True)
    ff.explain.occlusion(model, x, layer=-1, unit=0, window=8, stride=4)
    ff.explain.save_grid(maps, "grid.png", overlay=photo, titles=[...])

Layers are numbered from 1 (the first Dense layer) to L (the output); -1 is the output.
Everything runs through fastface.ops kernels on the model's backend (or `backend=`).
"""

from __future__ import annotations

from .attribution import QUADRATURES, completeness_gap, integrated_gradients, occlusion
from .demo import demo_pictures
from .plots import MissingDependencyError, save_grid
from .gradients import layer_activations, most_sensitive_units, saliency, smoothgrad
from .units import maximize_unit, projection, unit_images

__all__ = [
    "unit_images",
    "projection",
    "maximize_unit",
    "saliency",
    "smoothgrad",
    "layer_activations",
    "most_sensitive_units",
    "integrated_gradients",
    "occlusion",
    "completeness_gap",
    "QUADRATURES",
    "save_grid",
    "demo_pictures",
    "MissingDependencyError",
]
