"""What every explanation needs from a model, validated once at the public boundary.

Dimensions:
    L    number of dense layers of the model (layers are numbered 1..L; layer 0 is the input)
    IN   input features (pixels, H*W, flattened row-major)
    B    examples in a batch
    U    selected units of the explained layer

A "model" is anything with ``layers[i].W (IN_i, OUT_i)``, ``layers[i].b (OUT_i,)`` and
``layers[i].activation`` (fastface.model.Sequential, or a face task object holding one in
``.model``); ``model.backend`` is used when present, ``model.meta`` for the image shape.

Explanations are taken with respect to the *raw* input a user passes to ``model.predict``:
when the model standardises its inputs (``normalize="standard"``: x_net = (x - mean) / std,
per feature) or a face task puts a front end before the network (per-image normalisation,
whitening PCA), the forward pass applies those stages and the reverse pass chains through
them (fastface.explain._stages). For face tasks the raw input is the photo in 0..1.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..activations import check_activation
from ._stages import stages_of

__all__ = [
    "network",
    "Network",
    "check_layer",
    "check_units",
    "check_x",
    "image_shape",
    "resolve_backend",
]

_REFUSED = {"b": "bool", "c": "complex", "O": "object", "U": "string", "S": "bytes", "V": "structured"}


class Network:
    """The dense stack of a model as plain arrays: Ws[i] (IN_i, OUT_i), bs[i] (OUT_i,), acts[i].

    Built once per public call; holds views of the model's own arrays (no copies unless the
    dtype must change), so explanations always see the current weights.
    """

    __slots__ = ("Ws", "bs", "acts", "dtype", "backend", "model", "stages")

    def __init__(self, Ws, bs, acts, dtype, backend, model, stages=()):
        self.Ws, self.bs, self.acts = Ws, bs, acts
        self.dtype, self.backend, self.model = dtype, backend, model
        self.stages = list(stages)  # input stages before layer 1 (see _stages), often none

    def prepare(self, x, backend=None):
        """Raw x (B, IN) -> (first layer's input (B, n_0), [input of each stage])."""
        inputs = []
        for stage in self.stages:
            inputs.append(x)
            x = stage.forward(x, backend).astype(self.dtype, copy=False)
        return x, inputs

    @property
    def depth(self) -> int:
        return len(self.Ws)

    @property
    def input_dim(self) -> int:
        """Raw input width (before any input stage)."""
        return self.stages[0].n_in if self.stages else self.Ws[0].shape[0]

    def width(self, layer: int) -> int:
        """Units of layer `layer` (1-based); width(0) is the first layer's input width."""
        return self.Ws[0].shape[0] if layer == 0 else self.Ws[layer - 1].shape[1]


def _dense_stack(model):
    """The object holding ``.layers`` (a Sequential), looking inside face task objects too."""
    if hasattr(model, "layers"):
        return model
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        return inner
    raise TypeError(
        f"expected a fastface model (an object with .layers, each with .W, .b and .activation, "
        f"e.g. ff.Sequential or ff.load_model(path)); got {type(model).__name__}"
    )


def network(model, where: str) -> Network:
    """Read and check the layers of `model`; raise a clear error when they are not usable."""
    seq = _dense_stack(model)
    layers = list(seq.layers)
    if not layers:
        raise ValueError(f"{where}: the model has no layers; add Dense layers and fit it first")
    Ws, bs, acts = [], [], []
    for i, layer in enumerate(layers, start=1):
        W = getattr(layer, "W", None)
        b = getattr(layer, "b", None)
        if W is None or b is None:
            raise ValueError(
                f"{where}: layer {i} has no weights yet (W or b is None); build the model "
                "(give input_dim) or fit it before explaining it"
            )
        W, b = np.asarray(W), np.asarray(b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(
                f"{where}: layer {i} must have W (IN, OUT) and b (OUT,); got W {W.shape}, b {b.shape}"
            )
        if Ws and W.shape[0] != Ws[-1].shape[1]:
            raise ValueError(
                f"{where}: layer {i} takes {W.shape[0]} inputs but layer {i - 1} gives "
                f"{Ws[-1].shape[1]}; the model's layers do not chain"
            )
        Ws.append(W)
        bs.append(b)
        acts.append(check_activation(getattr(layer, "activation", None)))
    dtype = np.result_type(*Ws, *bs)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    Ws = [W.astype(dtype, copy=False) for W in Ws]
    bs = [b.astype(dtype, copy=False) for b in bs]
    backend = getattr(seq, "backend", None)
    if not (backend is None or isinstance(backend, str)):
        backend = None
    stages = stages_of(model, seq, np.dtype(dtype), Ws[0].shape[0], where)
    return Network(Ws, bs, acts, np.dtype(dtype), backend, seq, stages)


def resolve_backend(net: Network, backend):
    """`backend` if given, else the model's own backend (None lets fastface.ops choose)."""
    return net.backend if backend is None else backend


def check_layer(net: Network, layer, where: str) -> int:
    """A 1-based layer index in 1..L (negative counts from the end: -1 is the output layer)."""
    L = net.depth
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError(f"{where}: layer must be an integer in 1..{L}; got {layer!r}")
    layer = int(layer)
    if layer < 0:
        layer += L + 1
    if not 1 <= layer <= L:
        raise ValueError(
            f"{where}: layer must be in 1..{L} (1 = first Dense layer, {L} = output; -1 also "
            f"means the output); got {layer if layer > 0 else layer - L - 1}. Layer 0 would be "
            "the input itself"
        )
    return layer


def check_units(net: Network, layer: int, unit, where: str):
    """(indices (U,) int64, single: bool). unit: None (all), an int, or a sequence of ints."""
    width = net.width(layer)
    if unit is None:
        return np.arange(width), False
    single = isinstance(unit, numbers.Integral) and not isinstance(unit, bool)
    idx = np.atleast_1d(np.asarray(unit))
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise TypeError(
            f"{where}: unit must be None (every unit), an integer or a non-empty list of "
            f"integers; got {unit!r}"
        )
    bad = idx[(idx < 0) | (idx >= width)]
    if bad.size:
        raise ValueError(
            f"{where}: layer {layer} has {width} units, numbered 0..{width - 1}; got unit "
            f"{int(bad[0])}"
        )
    return idx.astype(np.int64), single


def check_x(net: Network, x, where: str, *, batch_ok: bool = True):
    """x (IN,) or (B, IN) as a C-contiguous (B, IN) array of the model's dtype; (x2, was_1d)."""
    arr = np.asarray(x)
    kind = _REFUSED.get(arr.dtype.kind)
    if kind is not None:
        raise TypeError(
            f"{where}: x must hold real numbers; got a {kind} array (dtype {arr.dtype}). "
            "Convert it first, e.g. x.astype(np.float32)"
        )
    IN = net.input_dim
    if arr.ndim == 1 and arr.shape[0] == IN:
        out, was_1d = arr[None, :], True
    elif arr.ndim == 2 and arr.shape[1] == IN and arr.shape[0] >= 1:
        out, was_1d = arr, False
        if not batch_ok and arr.shape[0] != 1:
            raise ValueError(
                f"{where}: explains one example at a time: x must be (IN,) = ({IN},) or "
                f"(1, {IN}); got shape {arr.shape}. Loop over the examples"
            )
    else:
        hint = ""
        if arr.size == IN or (arr.ndim >= 2 and math.prod(arr.shape[-2:]) == IN):
            hint = "; flatten images row-major first, e.g. x.reshape(-1) or x.reshape(len(x), -1)"
        what = f"(IN,) = ({IN},)" + (" or (B, IN)" if batch_ok else " or (1, IN)")
        raise ValueError(
            f"{where}: x must be {what} for a model with {IN} inputs; got shape {arr.shape}{hint}"
        )
    out = np.ascontiguousarray(out, dtype=net.dtype)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{where}: x contains NaN or inf; explanations need finite inputs")
    return out, was_1d


def check_shape(shape, IN: int, where: str):
    """(H, W) with H * W == IN."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{where}: shape must be a pair (H, W); got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != IN:
        raise ValueError(
            f"{where}: shape must be (H, W) with H * W = {IN} (the model's input width); "
            f"got {shape}"
        )
    return shape


def image_shape(model, IN: int, shape=None, where: str = "explain"):
    """The image shape (H, W) for a model with IN inputs.

    Order: the `shape` argument; the model's metadata (``meta["image_shape"]`` or
    ``meta["input_shape"]``, ``.image_shape``, a face task's ``front_end.shape``, looked up
    on the object and on its inner ``.model``);
    a square sqrt(IN) x sqrt(IN). Raises ValueError when none applies.
    """
    if shape is not None:
        return check_shape(shape, IN, where)
    for obj in (model, getattr(model, "model", None)):
        meta = getattr(obj, "meta", None)
        if isinstance(meta, dict):
            for key in ("image_shape", "input_shape", "shape"):
                value = meta.get(key)
                if value is not None and len(value) == 2 and math.prod(value) == IN:
                    return tuple(int(v) for v in value)
        fe = getattr(obj, "front_end", None) or getattr(obj, "frontend", None)
        for value in (getattr(obj, "image_shape", None), getattr(fe, "shape", None)):
            if value is not None and len(value) == 2 and math.prod(value) == IN:
                return tuple(int(v) for v in value)
    side = math.isqrt(IN)
    if side * side == IN:
        return (side, side)
    raise ValueError(
        f"{where}: cannot tell the image shape of a model with {IN} inputs (not a square and "
        "not in the model's metadata); pass shape=(H, W)"
    )
