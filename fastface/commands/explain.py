"""`fastface explain` and `fastface units`: explanation pictures from the command line.

    fastface explain MODEL IMAGE --layer L [--unit J] --method saliency|smoothgrad|ig|occlusion --out FILE.png
    fastface units MODEL --layer L --out FILE.png [--method projection|maximize]

MODEL is a file written by ``model.save`` (or a face task's save holding one); IMAGE is any
file Pillow reads (converted to grey, resized to the model's image shape) or a ``.npy``
array (H, W) / (IN,). The image shape comes from the model's metadata, else a square
sqrt(IN) x sqrt(IN), else --shape H W. Pixels are scaled to the range the model was trained
on (0..1 unless the model's input contract says 0..255).
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["register", "load_any_model", "load_image", "METHODS"]


def _saliency(model, x, args):
    from .. import explain

    return explain.saliency(model, x, args.layer, unit=args.units, abs=args.abs, backend=args.backend), ""


def _smoothgrad(model, x, args):
    from .. import explain

    S = explain.smoothgrad(
        model, x, args.layer, unit=args.units, samples=args.samples, noise=args.noise,
        seed=args.seed, abs=args.abs, backend=args.backend,
    )
    return S, f"{args.samples} noisy samples, noise {args.noise:g} of the range"


def _ig(model, x, args):
    import warnings

    from .. import explain

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the gap is printed below instead
        A, gap = explain.integrated_gradients(
            model, x, args.layer, unit=args.units, baseline=args.baseline, steps=args.steps,
            abs=args.abs, return_gap=True, backend=args.backend,
        )
    return A, f"completeness gap {np.max(gap):.3%} (attributions sum to a(x) - a(baseline))"


def _occlusion(model, x, args):
    from .. import explain

    O = explain.occlusion(
        model, x, args.layer, unit=args.units, shape=args.shape, window=args.window,
        stride=args.stride, baseline=args.baseline, abs=args.abs, backend=args.backend,
    )
    return O, f"window {args.window}, stride {args.stride}, baseline {args.baseline:g}"


# method name -> (function(model, x, args) -> (maps (U, IN), note), title)
METHODS = {
    "saliency": (_saliency, "saliency d a / d pixel"),
    "smoothgrad": (_smoothgrad, "SmoothGrad"),
    "ig": (_ig, "integrated gradients"),
    "occlusion": (_occlusion, "occlusion a(x) - a(occluded)"),
}


def load_any_model(path):
    """A fastface model from `path`: ff.load_model, else a face task's own loader."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} not found")
    from ..model import load_model

    try:
        return load_model(path)
    except ValueError as first:
        try:  # a face task's file (PersonClassifier, Identifier, Verifier) holds a model too
            from .. import faces

            loader = getattr(faces, "load", None)
            for name in ("PersonClassifier", "Identifier", "Verifier"):
                getattr(faces, name, None)  # imported, so their file kinds are registered
        except ImportError:
            loader = None
        if loader is None:
            raise first from None
        try:
            return loader(path)
        except ValueError as second:
            raise ValueError(f"{path}: neither a model file ({first}) nor a face model file ({second})") from None


def _input_scale(model) -> float:
    """255 when the model was trained on 0..255 pixels, else 1 (0..1 pixels)."""
    for obj in (model, getattr(model, "model", None)):
        contract = getattr(obj, "input_contract", None)
        if isinstance(contract, dict) and contract.get("range"):
            lo, hi = contract["range"]
            return 255.0 if hi > 2.0 else 1.0
    return 1.0


def load_image(path, shape, scale=1.0):
    """The photo at `path` as float64 (H, W) in 0..scale (uint8 / Pillow) or as stored (.npy float)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} not found")
    H, W = shape
    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.kind not in "biuf" or arr.dtype.kind == "b":
            raise TypeError(f"{path}: expected a numeric image array; got dtype {arr.dtype}")
        if arr.size != H * W:
            raise ValueError(
                f"{path}: the array has shape {arr.shape} ({arr.size} values) but the model "
                f"takes {H}x{W} = {H * W} pixels"
            )
        img = arr.reshape(H, W).astype(np.float64)
        if arr.dtype.kind in "iu":
            img *= scale / 255.0
        return img
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ValueError(
            "reading image files needs Pillow: pip install fastface[plots] (or pass a .npy array)"
        ) from None
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (W, H):
                grey = grey.resize((W, H), Image.BILINEAR)
            img = np.asarray(grey, dtype=np.float64)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not an image Pillow can read ({exc}); give a PNG/JPEG or a .npy") from None
    return img * (scale / 255.0)


def _top_units(model, x, layer, k, backend):
    """The k units with the largest saliency norm for this photo, and the layer's activations."""
    from .. import explain

    units, _ = explain.most_sensitive_units(model, x, layer, k, backend=backend)
    return units, explain.layer_activations(model, x, layer, backend=backend)


def _common_args(p):
    p.add_argument("--layer", type=int, required=True, help="layer number, 1 = first Dense layer, -1 = output")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image shape (default: from the model's metadata, else a square)")
    p.add_argument("--max-units", type=int, default=16, help="at most this many panels (default 16)")
    p.add_argument("--backend", default=None, help="kernel backend (default: the model's / automatic)")


def _run_explain(args) -> int:
    from .. import explain
    from ..explain._common import check_layer, image_shape, network

    model = load_any_model(args.model)
    net = network(model, "explain")
    args.layer = check_layer(net, args.layer, "explain")
    shape = args.shape = image_shape(model, net.input_dim, args.shape, "explain")
    photo = load_image(args.image, shape, _input_scale(model))
    x = photo.reshape(-1)
    if args.max_units < 1:
        raise ValueError(f"--max-units must be >= 1; got {args.max_units}")
    if args.unit is not None:
        args.units = args.unit
        chosen = [args.unit]
        a = explain.layer_activations(model, x, args.layer, backend=args.backend)
    else:
        chosen, a = _top_units(model, x, args.layer, min(args.max_units, net.width(args.layer)), args.backend)
        chosen = [int(u) for u in chosen]
        args.units = chosen
    func, title = METHODS[args.method]
    maps, note = func(model, x, args)
    maps = np.asarray(maps).reshape(len(chosen), *shape)
    explain.save_grid(
        maps,
        args.out,
        titles=[f"unit {u}: a={a[u]:.3g}" for u in chosen],
        overlay=None if args.no_overlay else photo,
        alpha=0.65,
        suptitle=f"layer {args.layer}: {title}",
    )
    which = f"unit {args.unit}" if args.unit is not None else f"the {len(chosen)} units this photo can move most"
    print(f"wrote {args.out}: {args.method} of layer {args.layer}, {which}" + (f"; {note}" if note else ""))
    return 0


def _run_units(args) -> int:
    from .. import explain
    from ..explain._common import check_layer, image_shape, network

    model = load_any_model(args.model)
    net = network(model, "units")
    args.layer = check_layer(net, args.layer, "units")
    shape = image_shape(model, net.input_dim, args.shape, "units")
    if args.max_units < 1:
        raise ValueError(f"--max-units must be >= 1; got {args.max_units}")
    n = min(args.max_units, net.width(args.layer))
    if args.method == "projection":
        imgs = explain.unit_images(model, args.layer, shape, units=list(range(n)), backend=args.backend)
        what = "incoming weights" if args.layer == 1 else "W1 @ ... @ W%d columns" % args.layer
        if net.stages:
            what += ", carried back to the pixels through the input stages"
    else:
        iterator = range(n)
        if n > 4 and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc="maximize_unit", unit="unit", file=sys.stderr)
            except ImportError:
                pass
        imgs = np.stack([
            explain.maximize_unit(model, args.layer, j, shape=shape, steps=args.steps, backend=args.backend)
            for j in iterator
        ])
        what = "input of bounded norm exciting the unit most"
    explain.save_grid(
        imgs, args.out, titles=[f"unit {j}" for j in range(n)], shared_scale=False, colorbar=False,
        suptitle=f"layer {args.layer}: {what}",
    )
    print(f"wrote {args.out}: {n} of {net.width(args.layer)} units of layer {args.layer} ({what})")
    return 0


def _guard(run):
    """ImportError of an optional extra -> the CLI's one-line error (exit 2)."""

    def call(args):
        from ..explain import MissingDependencyError

        try:
            return run(args)
        except MissingDependencyError as exc:
            raise ValueError(str(exc)) from None

    return call


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="saliency / SmoothGrad / integrated gradients / occlusion of a photo, as a PNG",
        description="What in this photo moves unit J of layer L? Writes a PNG grid of signed maps "
        "over the photo (red: raising the pixel raises the unit; blue: lowers it).",
    )
    p.add_argument("model", help="a model file (model.save / face task save)")
    p.add_argument("image", help="a photo (any file Pillow reads) or a .npy array")
    p.add_argument("--unit", type=int, default=None,
                   help="one unit (default: the --max-units units with the largest gradient for this photo)")
    p.add_argument("--method", choices=sorted(METHODS), default="saliency",
                   help="saliency (default): exact gradient; smoothgrad; ig: integrated gradients; occlusion")
    p.add_argument("--abs", action="store_true", help="absolute values instead of signed maps")
    p.add_argument("--no-overlay", action="store_true", help="do not draw the photo under the maps")
    p.add_argument("--samples", type=int, default=32, help="smoothgrad: noisy copies (default 32)")
    p.add_argument("--noise", type=float, default=0.15, help="smoothgrad: noise, fraction of the range")
    p.add_argument("--seed", type=int, default=0, help="smoothgrad: random seed")
    p.add_argument("--steps", type=int, default=None, help="ig: quadrature nodes (default adaptive from 64)")
    p.add_argument("--baseline", type=float, default=0.0, help="ig/occlusion: baseline pixel value")
    p.add_argument("--window", type=int, default=8, help="occlusion: window side in pixels")
    p.add_argument("--stride", type=int, default=4, help="occlusion: stride in pixels")
    _common_args(p)
    p.set_defaults(func=_guard(_run_explain))

    q = subparsers.add_parser(
        "units",
        help="what each unit of a layer looks for, as a PNG grid of images",
        description="Layer 1: each unit's incoming weights; layer >= 2: W1 @ ... @ Wl projected back "
        "to the pixels (--method projection, default) or the input of bounded norm that excites the "
        "unit most (--method maximize).",
    )
    q.add_argument("model", help="a model file (model.save / face task save)")
    q.add_argument("--method", choices=["projection", "maximize"], default="projection")
    q.add_argument("--steps", type=int, default=200, help="maximize: gradient ascent steps")
    _common_args(q)
    q.set_defaults(func=_guard(_run_units))
