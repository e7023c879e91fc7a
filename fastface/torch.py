"""fastface inside PyTorch: a dense layer whose forward and backward are fastface kernels.

Dimensions:
    N    examples in the batch (rows; leading dims of a (*, IN) input are flattened into N)
    IN   input features
    OUT  units of the layer

    x (N, IN)  ->  DenseFunction  ->  a = activation(x @ weight + bias)  (N, OUT)
    weight (IN, OUT)   -- fastface's layout, the TRANSPOSE of nn.Linear's (OUT, IN)
    bias   (OUT,)

Use it like ``torch.nn.Linear`` inside any model and any ``torch.optim`` optimizer::

    import torch, fastface.torch as fft
    net = torch.nn.Sequential(fft.Dense(400, 25, "sigmoid"), fft.Dense(25, 15, "sigmoid"),
                              fft.Dense(15, 1))                 # last layer linear: logits
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    loss.backward(); opt.step()

Zero copy at the boundary:
- CPU tensors (float32 or float64, contiguous or strided) reach :mod:`fastface.ops` as NumPy
  views of the tensors' own memory (``tensor.detach().numpy()``); the kernels' results come
  back as tensors over the kernels' output buffers (``torch.from_numpy``). Nothing is copied.
- CUDA tensors go as they are to the ``cuda`` backend through ``__cuda_array_interface__``
  (PyTorch implements it); its device arrays come back with ``torch.as_tensor`` on the same
  device, never through the host.

Gradients: ``dense_backward`` gives (dx, dW, db) from the forward output ``a`` (derivatives are
computed from ``a``), so the layer saves x, weight and a. When the input needs no gradient
(a first layer) or the parameters are frozen, the backward computes only the products needed
(dz = act'(a) * da, then x.T @ dz and/or dz @ W.T through ``ops.matmul``). It is
once-differentiable (no double backward). ``torch.autograd.gradcheck`` passes in float64 for
every activation.

Whole networks: ``from_model(model)`` turns a fastface Sequential into an ``nn.Sequential`` of
Dense layers (weights copied); ``to_model(module)`` turns a torch MLP (Dense layers, or
``nn.Linear`` + Sigmoid/ReLU/Tanh/Softmax/Identity) into a fastface Sequential, for fastface's
explanations, face tasks and files.

dtypes: float32 and float64 only, one dtype for x, weight and bias (as nn.Linear demands);
anything else is refused with a TypeError saying how to convert.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import ops
from .activations import DERIVATIVES, check_activation

__all__ = ["DenseFunction", "Dense", "dense", "to_array", "from_array", "from_model", "to_model"]

_DTYPES = (torch.float32, torch.float64)


# --- the boundary: tensors <-> arrays fastface.ops accepts, without copies ------------------
def _host_in(t: torch.Tensor) -> np.ndarray:
    """CPU tensor -> NumPy view of the same memory (strides kept)."""
    return t.detach().numpy()


def _host_out(arr, like: torch.Tensor) -> torch.Tensor:
    """NumPy result -> tensor over the same buffer."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    if not arr.flags.writeable:  # torch.from_numpy needs a writable buffer
        arr = arr.copy()
    return torch.from_numpy(arr)


def _device_in(t: torch.Tensor) -> torch.Tensor:
    """CUDA tensor -> itself, detached: it exposes __cuda_array_interface__ for the cuda backend."""
    return t.detach()


def _device_out(arr, like: torch.Tensor) -> torch.Tensor:
    """Device array (__cuda_array_interface__) -> tensor on like's device, no host round trip."""
    if isinstance(arr, torch.Tensor):
        return arr
    return torch.as_tensor(arr, device=like.device)


# device type -> (tensor to array, array to tensor)
_BRIDGES = {
    "cpu": (_host_in, _host_out),
    "cuda": (_device_in, _device_out),
}


def _host_partial_backward(x, W, a, da, activation, need_x, need_w, need_b, backend):
    """The needed part of dense_backward on the host: dz = act'(a) * da, then dx = dz @ W.T
    only if need_x, dW = x.T @ dz only if need_w, db only if need_b (None for the others)."""
    dz = DERIVATIVES[activation](a, da)
    dx = ops.matmul(dz, W.T, backend=backend) if need_x else None
    dW = ops.matmul(x.T, dz, backend=backend) if need_w else None
    db = dz.sum(axis=0) if need_b else None
    return dx, dW, db


# device type -> partial backward (device types without one always take ops.dense_backward)
_PARTIAL_BACKWARD = {"cpu": _host_partial_backward}


def _bridge(t: torch.Tensor, where: str):
    try:
        return _BRIDGES[t.device.type]
    except KeyError:
        raise TypeError(
            f"{where}: tensors on device {t.device} are not supported; fastface runs on "
            f"{sorted(_BRIDGES)} tensors. Move them with .cpu() or .cuda()"
        ) from None


def to_array(t: torch.Tensor):
    """The array fastface.ops receives for tensor `t`: a NumPy view (CPU) or `t` itself (CUDA)."""
    return _bridge(t, "to_array")[0](t)


def from_array(arr, like: torch.Tensor) -> torch.Tensor:
    """A tensor over `arr` (a kernel result) on the device of `like`, without a copy."""
    return _bridge(like, "from_array")[1](arr, like)


def _check_tensors(where: str, **named) -> None:
    items = [(k, v) for k, v in named.items() if v is not None]
    for name, t in items:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in _DTYPES:
            raise TypeError(
                f"{where}: {name} must be float32 or float64; got {t.dtype}. "
                f"Convert it first, e.g. {name}.float() or {name}.double()"
            )
    (first, t0), rest = items[0], items[1:]
    for name, t in rest:
        if t.dtype != t0.dtype:
            raise TypeError(
                f"{where}: {first} is {t0.dtype} but {name} is {t.dtype}; they must share one "
                f"dtype. Convert the input with x.to(layer.weight.dtype) or the layer with .double()/.float()"
            )
        if t.device != t0.device:
            raise TypeError(
                f"{where}: {first} is on {t0.device} but {name} is on {t.device}; move them to one "
                "device (e.g. layer.to(x.device))"
            )


# --- the autograd function --------------------------------------------------------------------
class DenseFunction(torch.autograd.Function):
    """a = activation(x @ weight + bias) with fastface kernels forward and backward.

    ``DenseFunction.apply(x, weight, bias, activation="linear", backend=None)``

    x (N, IN), weight (IN, OUT), bias (OUT,) or None -> a (N, OUT). `backend` is a fastface
    backend name ('numpy', 'numba', 'c', 'cuda') or None for fastface's automatic choice
    (CUDA tensors always go to 'cuda').
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, activation="linear", backend=None):
        activation = check_activation(activation)
        dtype = getattr(x, "dtype", None)
        if (
            dtype not in _DTYPES
            or not isinstance(weight, torch.Tensor)
            or weight.dtype != dtype
            or weight.device != x.device
            or (bias is not None and (not isinstance(bias, torch.Tensor) or bias.dtype != dtype or bias.device != x.device))
        ):
            _check_tensors("DenseFunction", x=x, weight=weight, bias=bias)
        to_arr, from_arr = _bridge(x, "DenseFunction")
        if bias is None:
            bias_arr = to_arr(torch.zeros(weight.shape[-1], dtype=dtype, device=x.device))
        else:
            bias_arr = to_arr(bias)
        a = ops.dense_forward(to_arr(x), to_arr(weight), bias_arr, activation, backend=backend)
        out = from_arr(a, x)
        ctx.activation = activation
        ctx.backend = backend
        ctx.has_bias = bias is not None
        ctx.bridge = (to_arr, from_arr)
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # Once differentiable: the gradients returned are plain tensors with no history, so a
        # double backward (create_graph=True runs this with grad mode on) would be silently
        # wrong. Refuse it; this check is cheaper than the once_differentiable decorator.
        if torch.is_grad_enabled():
            raise RuntimeError(
                "fastface.torch.DenseFunction is differentiable once: its backward cannot build a "
                "graph (create_graph=True / double backward). Use torch.nn.Linear for "
                "higher-order gradients"
            )
        x, weight, out = ctx.saved_tensors
        to_arr, from_arr = ctx.bridge
        if grad_out.dtype != out.dtype:
            grad_out = grad_out.to(out.dtype)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        args = (to_arr(x), to_arr(weight), to_arr(out), to_arr(grad_out), ctx.activation)
        partial = _PARTIAL_BACKWARD.get(x.device.type)
        if partial is not None and not (need_x and (need_w or need_b)):
            # a layer whose input needs no gradient (the first layer) or whose parameters are
            # frozen: only the products that are needed
            dx, dW, db = partial(*args, need_x, need_w, need_b, ctx.backend)
        else:
            dx, dW, db = ops.dense_backward(*args, backend=ctx.backend)
        return (
            from_arr(dx, x) if need_x else None,
            from_arr(dW, x) if need_w else None,
            from_arr(db, x) if need_b else None,
            None,
            None,
        )


def dense(x, weight, bias=None, activation="linear", backend=None):
    """Functional form: x (*, IN), weight (IN, OUT), bias (OUT,) or None -> (*, OUT)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dense: x must be a torch.Tensor; got {type(x).__name__}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(
            "dense: weight must be a 2-D tensor (IN, OUT) (fastface layout, the transpose of "
            f"nn.Linear's); got {getattr(weight, 'shape', type(weight).__name__)}"
        )
    IN, OUT = weight.shape
    if x.dim() < 1 or x.shape[-1] != IN:
        raise ValueError(
            f"dense: x must be (*, IN) = (*, {IN}) to match weight (IN, OUT) = {tuple(weight.shape)}; "
            f"got shape {tuple(x.shape)}"
        )
    lead = x.shape[:-1]
    x2 = x if x.dim() == 2 else x.reshape(-1, IN)
    a = DenseFunction.apply(x2, weight, bias, activation, backend)
    return a if x.dim() == 2 else a.reshape(*lead, OUT)


# --- the module --------------------------------------------------------------------------------
class Dense(torch.nn.Module):
    """A fully connected layer computed by fastface: a = activation(x @ weight + bias).

    Dense(in_features, out_features, activation="linear", bias=True, backend=None,
          device=None, dtype=None)

    Input (*, in_features) -> output (*, out_features). Parameters:
        weight (in_features, out_features) -- fastface's (IN, OUT) layout, i.e. the transpose
                of ``nn.Linear.weight``; state_dict keys are 'weight' and 'bias'.
        bias   (out_features,) or None.
    Initialised like nn.Linear: U(-1/sqrt(IN), 1/sqrt(IN)) for both, drawn in nn.Linear's order,
    so under the same torch seed ``Dense(i, o).weight == nn.Linear(i, o).weight.T``.
    Use :meth:`from_linear` / :meth:`to_linear` to convert either way.
    """

    def __init__(self, in_features, out_features, activation="linear", bias=True, backend=None,
                 device=None, dtype=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Dense: {name} must be a positive integer; got {v!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = check_activation(activation)
        if backend is not None:
            from . import backends

            backends.get(backend)  # unknown / unavailable backends fail here, not mid-training
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(self.in_features, self.out_features, **factory))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation, drawn in (OUT, IN) order then stored transposed."""
        with torch.no_grad():
            tmp = torch.empty(self.out_features, self.in_features, dtype=self.weight.dtype,
                              device=self.weight.device)
            torch.nn.init.kaiming_uniform_(tmp, a=math.sqrt(5))
            self.weight.copy_(tmp.T)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return dense(x, self.weight, self.bias, self.activation, self.backend)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, activation="linear", backend=None) -> "Dense":
        """A Dense layer holding a copy of `linear`'s parameters (weight transposed)."""
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"from_linear: expected a torch.nn.Linear; got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, activation, linear.bias is not None,
                    backend, device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.T)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def to_linear(self) -> torch.nn.Linear:
        """An nn.Linear with a copy of this layer's parameters (the activation is not included)."""
        lin = torch.nn.Linear(self.in_features, self.out_features, self.bias is not None,
                              device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight.T)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"activation={self.activation!r}, bias={self.bias is not None}, backend={self.backend!r}"
        )


# --- converting whole networks between fastface and PyTorch -------------------------------------
# activation modules of plain PyTorch MLPs -> fastface activation names
_TORCH_ACTIVATIONS = {
    torch.nn.Identity: "linear",
    torch.nn.Sigmoid: "sigmoid",
    torch.nn.ReLU: "relu",
    torch.nn.Tanh: "tanh",
    torch.nn.Softmax: "softmax",
}


def from_model(model, backend=None) -> torch.nn.Sequential:
    """A ``torch.nn.Sequential`` of :class:`Dense` layers holding copies of a fastface model's
    weights (same activations, the model's dtype): train it further with any torch optimizer,
    then come back with :func:`to_model`.

    Models that standardise their inputs (``normalize="standard"``) are refused: give the
    torch net ``model.transform_inputs(X)`` instead, or train without normalisation.
    """
    from .model import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"from_model: expected a fastface Sequential; got {type(model).__name__}")
    if not model.built:
        raise ValueError("from_model: the model is not built yet; give Sequential(input_dim=...) or fit it first")
    if model.input_contract.get("normalize") is not None:
        raise ValueError(
            "from_model: the model standardises its inputs (normalize='standard'), which a "
            "torch Sequential of Dense layers would not do; feed the torch net "
            "model.transform_inputs(X) instead"
        )
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    layers = []
    for layer in model.layers:
        dense_layer = Dense(layer.input_dim, layer.units, layer.activation, backend=backend, dtype=dtype)
        with torch.no_grad():
            dense_layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W)))
            dense_layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(layer.b)))
        layers.append(dense_layer)
    return torch.nn.Sequential(*layers)


def _layers_of(module):
    """[(W (IN, OUT) ndarray, b (OUT,) ndarray, activation)] of a torch MLP, in order."""
    mods = list(module) if isinstance(module, torch.nn.Sequential) else [module]
    out = []
    for i, mod in enumerate(mods):
        if isinstance(mod, (Dense, torch.nn.Linear)):
            W = mod.weight.detach().cpu()
            W = W.numpy() if isinstance(mod, Dense) else W.T.numpy()
            b = np.zeros(W.shape[1], W.dtype) if mod.bias is None else mod.bias.detach().cpu().numpy()
            act = mod.activation if isinstance(mod, Dense) else "linear"
            out.append([W, b, act])
            continue
        act = _TORCH_ACTIVATIONS.get(type(mod))
        if act is None:
            raise TypeError(
                f"to_model: layer {i} is {type(mod).__name__}; fastface models are stacks of dense "
                f"layers: fastface.torch.Dense, torch.nn.Linear, each optionally followed by one of "
                f"{sorted(t.__name__ for t in _TORCH_ACTIVATIONS)}"
            )
        if isinstance(mod, torch.nn.Softmax) and mod.dim not in (-1, 1):
            raise ValueError(f"to_model: layer {i} is Softmax(dim={mod.dim}); fastface's softmax is over the last dim")
        if not out or (out[-1][2] != "linear" and act != "linear"):
            raise ValueError(
                f"to_model: layer {i} ({type(mod).__name__}) does not follow a linear dense layer; "
                "give one activation after each Linear (or none)"
            )
        out[-1][2] = act if act != "linear" else out[-1][2]
    if not out:
        raise ValueError("to_model: the module holds no dense layer")
    return out


def to_model(module, seed=0):
    """A fastface Sequential with copies of the weights of a torch MLP.

    `module`: an ``nn.Sequential`` of :class:`Dense` layers and/or ``nn.Linear`` layers, each
    ``nn.Linear`` optionally followed by ``nn.Identity``, ``nn.Sigmoid``, ``nn.ReLU``,
    ``nn.Tanh`` or ``nn.Softmax(dim=-1)``. The fastface model gets W (IN, OUT) = the Dense
    weight, or ``Linear.weight.T``, in the module's dtype (float32 or float64); compile it
    before fitting it further. Use it with fastface's explanations, face tasks and save/load.
    """
    from .model import Dense as FFDense
    from .model import Sequential

    layers = _layers_of(module)
    dtype = layers[0][0].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"to_model: the module's weights must be float32 or float64; got {dtype}")
    for i in range(1, len(layers)):
        if layers[i][0].shape[0] != layers[i - 1][0].shape[1]:
            raise ValueError(
                f"to_model: dense layer {i} takes {layers[i][0].shape[0]} inputs but the layer "
                f"before gives {layers[i - 1][0].shape[1]}"
            )
    model = Sequential([FFDense(W.shape[1], act) for W, _, act in layers], input_dim=layers[0][0].shape[0],
                       dtype=dtype.name, seed=seed)
    weights = []
    for W, b, _ in layers:
        weights += [W, b]
    model.set_weights(weights)
    return model
