"""The pictures of ``fastface demo``: unit images of layers 1 and 2, saliency per hidden layer.

Dimensions: IN = H*W input pixels; image (H, W) or (IN,), in the scale the network takes.
"""

from __future__ import annotations

import os

import numpy as np

from ._common import check_layer, image_shape, network
from .plots import save_grid
from .gradients import layer_activations, most_sensitive_units, saliency
from .units import unit_images

__all__ = ["demo_pictures"]


def demo_pictures(model, image, shape, out_dir, *, max_units=32, saliency_units=8):
    """Write the demo's PNGs into out_dir and return their paths (list of str).

    - ``units_layer1.png``: the first `max_units` layer-1 units' incoming weights as images;
    - ``units_layer2.png`` (models with >= 2 layers): layer-2 units projected back through W_1;
    - ``saliency_layer{l}.png`` for every hidden layer l (layer 1 for a one-layer model): the
      signed saliency d a_l[j] / d x of the photo for the `saliency_units` units of layer l whose
      gradient is largest (the units this photo can move most), over the photo, each panel
      with its own colour scale and the unit's activation in the title.

    model   a fastface model (or a face task object holding one in .model)
    image   the photo as the network takes it: (H, W) or (IN,), already preprocessed
    shape   (H, W), or None to use the model's metadata / a square
    """
    net = network(model, "demo_pictures")
    H, W = image_shape(model, net.input_dim, shape, "demo_pictures")
    x = np.asarray(image, dtype=np.float64).reshape(-1)
    if x.shape[0] != net.input_dim:
        raise ValueError(
            f"demo_pictures: image must have {net.input_dim} pixels ({H}x{W}); got shape {np.shape(image)}"
        )
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for layer in range(1, min(2, net.depth) + 1):
        n = min(max_units, net.width(layer))
        imgs = unit_images(model, layer, (H, W), units=list(range(n)))
        what = "incoming weights" if layer == 1 else "projected back: W1 @ W2"
        paths.append(
            save_grid(
                imgs,
                os.path.join(out_dir, f"units_layer{layer}.png"),
                titles=[f"unit {j}" for j in range(n)],
                shared_scale=False,
                colorbar=False,
                suptitle=f"layer {layer}: what each unit looks for ({what}); red +, blue -",
            )
        )
    hidden = range(1, max(net.depth - 1, 1) + 1)
    for layer in hidden:
        layer = check_layer(net, layer, "demo_pictures")
        units, _ = most_sensitive_units(model, x, layer, min(saliency_units, net.width(layer)))
        a = layer_activations(model, x, layer)
        S = saliency(model, x, layer, unit=units)
        paths.append(
            save_grid(
                S.reshape(len(units), H, W),
                os.path.join(out_dir, f"saliency_layer{layer}.png"),
                titles=[f"unit {u}: a={a[u]:.3g}" for u in units],
                overlay=x.reshape(H, W),
                alpha=0.8,
                shared_scale=False,
                suptitle=f"layer {layer}: d a[{layer}][j] / d pixel for this photo (signed)",
            )
        )
    return paths
