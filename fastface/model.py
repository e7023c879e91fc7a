"""Keras-like models: Dense layers in a Sequential stack; compile / fit / predict / evaluate / save.

    model = ff.Sequential([ff.Dense(25, "sigmoid"), ff.Dense(15, "sigmoid"), ff.Dense(1, "sigmoid")],
                          input_dim=400, dtype="float32", seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam", learning_rate=1e-3)
    history = model.fit(X, y, epochs=20, batch_size=32, verbose=0)
    model.predict(X)                          # (N, OUT) probabilities
    model.predict_classes(X, threshold=0.5)   # rule p >= threshold (sigmoid), argmax (softmax)

Shapes: X (N, IN) (images (N, H, W) are flattened row-major; one example (IN,) is read as
(1, IN)); layer l has W (IN_l, OUT_l), b (OUT_l,); predictions (N, OUT_L).

Parameters live in one flat vector (every layer's W, stored transposed, then b);
``layers[i].W`` (an (IN, OUT) column-major view) and ``.b`` are views into it (assigning to
them copies into it); ``get_weights()`` returns C-ordered copies. Training runs on one of two paths:
- the *fused* path (fastface._fused): when the weights and one batch's activations fit in
  cache (``compile(fused="auto")``, the default, with backend None or 'numba'), one compiled
  call trains a whole epoch with no Python and no allocation per step;
- the *per-layer* path: per layer and batch, fastface.ops kernels of the chosen backend
  (ops.dense_forward forward; ops.matmul for dx and dW^T backward, the derivative from the
  activation's output as in fastface.activations).
Both compute the same thing (tested); the optimizer update is shared.

Input contract: ``fit`` records the range of the raw inputs it saw (``model.input_contract``).
With ``normalize="standard"`` (Sequential or compile) ``fit`` also fits a per-feature mean/std
on the first fit and the model applies it to every input it gets later (predict, evaluate,
forward_all), so callers always pass raw data. The model never rescales data by itself
(no /255): when ``predict`` sees data whose range clearly differs from the training range
(0..255 pixels into a model trained on 0..1, or the reverse, or data normalised twice), it
warns once (InputRangeWarning) and goes on. The contract is saved with the model.

``model.meta`` is a JSON-serialisable dict saved and restored with the model (face tasks keep
their labels, threshold and calibration there). ``model.forward_all(X)`` returns every layer's
activation ``[x, a1, ..., aL]`` (x is the network's actual input, after normalisation).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import _fused, _fused_pair, losses, ops, optim
from .activations import DERIVATIVES, check_activation
from .backends import get as _get_backend
from .callbacks import Callback, EarlyStopping, ProgressBar
from .io import load_npz, save_npz

__all__ = [
    "Dense",
    "Sequential",
    "History",
    "load_model",
    "TrainingDivergedError",
    "InputRangeWarning",
    "EarlyStopping",
    "Callback",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "fastface.model"
FORMAT_VERSION = 1
NORMALIZE = (None, "standard")


class TrainingDivergedError(FloatingPointError, ValueError):
    """A loss or gradient became NaN/inf during fit; ``.epoch``, ``.batch``, ``.history``.

    Also a ValueError (the usual cause is a learning rate or input scale that does not suit
    the data), so the command line reports it as a one-line error."""

    def __init__(self, message, epoch=None, batch=None, history=None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.history = history


class InputRangeWarning(UserWarning):
    """predict got data whose value range does not match what the model was trained on."""


class History:
    """Per-epoch metrics of a fit: ``history.history["loss"]`` (also ``history["loss"]``)."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.params: dict = {}

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, metrics=[{keys}])"


class Dense:
    """A fully connected layer: a = activation(x @ W + b); W (IN, OUT), b (OUT,).

    ``W`` and ``b`` are None until the model is built (input width known); afterwards they are
    views into the model's parameters, and assigning to them copies into those (shape checked).
    """

    def __init__(self, units, activation=None, name=None):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be an int >= 1; got {units!r}")
        self.units = int(units)
        self.activation = check_activation(activation)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Dense: name must be a string or None; got {name!r}")
        self.name = name
        self.input_dim = None
        self._W = None
        self._b = None

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._assign("W", self._W, value)

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._assign("b", self._b, value)

    def _assign(self, what, view, value):
        if view is None:
            raise ValueError(f"{self!r}: {what} does not exist before the model is built (give input_dim or fit)")
        arr = np.asarray(value)
        if arr.shape != view.shape:
            raise ValueError(f"{self!r}: {what} must have shape {view.shape}; got {arr.shape}")
        if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
            raise ValueError(f"{self!r}: {what} must hold finite real numbers")
        view[...] = arr

    def _bind(self, W, b):
        self._W = W
        self._b = b
        self.input_dim = W.shape[0]

    @property
    def built(self) -> bool:
        return self._W is not None

    def count_params(self) -> int:
        return 0 if self.input_dim is None else (self.input_dim + 1) * self.units

    def get_config(self) -> dict:
        return {"units": self.units, "activation": self.activation, "name": self.name}

    def __repr__(self):
        name = f", name={self.name!r}" if self.name else ""
        return f"Dense({self.units}, activation={self.activation!r}{name})"


# --- helpers for the input and target checks --------------------------------------------------
def _refuse_kind(arr, name, where, kinds="iuf"):
    if arr.dtype.kind not in kinds:
        raise TypeError(
            f"{where}: {name} must hold real numbers; got dtype {arr.dtype}. "
            f"Convert it first, e.g. {name}.astype(np.float32)"
        )


def _check_finite(arr, name, where):
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{where}: {name} holds {bad} NaN or infinite value(s); remove or impute them "
            "(e.g. np.nan_to_num) before training"
        )


class Sequential:
    """A stack of Dense layers.

    layers: list of Dense; input_dim: width of the input (or None: taken from the first fit);
    dtype: 'float32' (default) or 'float64'; backend: None (fastest available) or a name of
    fastface.available_backends(); seed: weights init and shuffling come from
    ``np.random.default_rng(seed)``; normalize: None or 'standard' (see the module doc).
    """

    def __init__(self, layers=None, input_dim=None, dtype="float32", backend=None, seed=0, normalize=None, name=None):
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Sequential: dtype must be 'float32' or 'float64'; got {dtype!r}") from None
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Sequential: dtype must be 'float32' or 'float64'; got {dtype!r}")
        if backend is not None:
            _get_backend(backend)  # ValueError for unknown names, BackendUnavailableError with the reason
        self.backend = backend
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Sequential: seed must be an int >= 0; got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        if normalize not in NORMALIZE:
            raise ValueError(f"Sequential: normalize must be one of {list(NORMALIZE)}; got {normalize!r}")
        self.name = name
        self.layers: list[Dense] = []
        self.meta: dict = {}
        self.input_contract = {"normalize": normalize, "range": None}
        self._mean = None
        self._std = None
        self._warned_range = False
        self.input_dim = None
        self.theta = None
        self._one = None
        self.loss = None
        self.optimizer = None
        self.fused = "auto"
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)
        if input_dim is not None:
            self.build(input_dim)

    # --- structure ------------------------------------------------------------------------
    def add(self, layer: Dense) -> None:
        if not isinstance(layer, Dense):
            raise TypeError(f"Sequential: layers must be fastface.Dense objects; got {type(layer).__name__}")
        if self.theta is not None:
            raise ValueError("Sequential: cannot add layers after the model is built")
        if layer.built:
            raise ValueError(f"Sequential: {layer!r} already belongs to a built model; make a new Dense")
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return self.theta is not None

    def build(self, input_dim) -> None:
        """Allocate and initialise the weights for inputs of width `input_dim`.

        W ~ Glorot uniform (Keras's default), b = 0, drawn from the model's seeded generator.
        """
        if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
            raise ValueError(f"Sequential: input_dim must be an int >= 1; got {input_dim!r}")
        if not self.layers:
            raise ValueError("Sequential: the model has no layers; pass a list of Dense layers")
        if self.built:
            if int(input_dim) != self.input_dim:
                raise ValueError(f"Sequential: the model was built for input_dim={self.input_dim}, got {input_dim}")
            return
        self.input_dim = int(input_dim)
        sizes = self.layer_sizes
        P = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
        self.theta = np.zeros(P, dtype=self.dtype)
        self._grad = np.zeros(P, dtype=self.dtype)
        off = 0
        rows = []
        for layer, fan_in, fan_out in zip(self.layers, sizes[:-1], sizes[1:]):
            # stored transposed (see fastface._fused): W is an (IN, OUT) column-major view
            W = self.theta[off : off + fan_in * fan_out].reshape(fan_out, fan_in).T
            b = self.theta[off + fan_in * fan_out : off + fan_in * fan_out + fan_out]
            rows.append((fan_in, fan_out, off, off + fan_in * fan_out))
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W[...] = self._rng.uniform(-limit, limit, size=(fan_in, fan_out))
            layer._bind(W, b)
            off += fan_in * fan_out + fan_out
        self._rows = rows
        self._acts = np.array([_fused.ACT_CODES[layer.activation] for layer in self.layers], dtype=np.int64)
        self._tables = {}
        self._one = None

    def __setstate__(self, state):
        """Unpickling (copy.deepcopy, joblib): re-bind each layer's W and b as views of theta.

        Pickle stores views as independent copies; without this the layers would stop
        seeing the weights that training and predict update. (Files: use save / load_model.)
        """
        self.__dict__.update(state)
        if self.theta is not None:
            for layer, (fan_in, fan_out, wo, bo) in zip(self.layers, self._rows):
                layer._bind(self.theta[wo:bo].reshape(fan_out, fan_in).T, self.theta[bo : bo + fan_out])

    @property
    def layer_sizes(self) -> list:
        """[IN, OUT_0, OUT_1, ...] (IN is None before the model is built)."""
        return [self.input_dim] + [layer.units for layer in self.layers]

    def _table(self, B: int) -> np.ndarray:
        """The (L, 6) layer table of fastface._fused for a batch capacity of B rows."""
        table = self._tables.get(B)
        if table is None:
            table = np.zeros((len(self.layers), 6), dtype=np.int64)
            ao = 0
            for l, (fan_in, fan_out, wo, bo) in enumerate(self._rows):
                table[l] = (fan_in, fan_out, wo, bo, ao, self._acts[l])
                ao += B * fan_out
            self._tables[B] = table
        return table

    def _workspace(self, B: int) -> np.ndarray:
        """Activation (or gradient) workspace of fastface._fused for B rows: B * sum OUT_l."""
        return np.zeros(B * sum(layer.units for layer in self.layers), dtype=self.dtype)

    def count_params(self) -> int:
        return 0 if self.theta is None else int(self.theta.size)

    def _need_built(self, where):
        if not self.built:
            raise ValueError(f"{where}: the model is not built yet; give Sequential(input_dim=...) or call fit first")

    # --- weights --------------------------------------------------------------------------
    def get_weights(self) -> list:
        """[W1, b1, W2, b2, ...] (Keras order), copies."""
        self._need_built("get_weights")
        out = []
        for layer in self.layers:
            out += [layer.W.copy(), layer.b.copy()]
        return out

    def set_weights(self, weights) -> None:
        """Set every layer from [W1, b1, W2, b2, ...] (Keras order); shapes must match."""
        self._need_built("set_weights")
        weights = list(weights)
        if len(weights) != 2 * len(self.layers):
            raise ValueError(
                f"set_weights: expected {2 * len(self.layers)} arrays [W1, b1, ...] for "
                f"{len(self.layers)} layers; got {len(weights)}"
            )
        shapes = [(a.shape, b.shape) for a, b in ((l.W, l.b) for l in self.layers)]
        for i, layer in enumerate(self.layers):
            for what, value, shape in (("W", weights[2 * i], shapes[i][0]), ("b", weights[2 * i + 1], shapes[i][1])):
                arr = np.asarray(value)
                if arr.shape != shape:
                    raise ValueError(
                        f"set_weights: layer {i} {what} must have shape {shape}; got {arr.shape}"
                    )
                if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
                    raise ValueError(f"set_weights: layer {i} {what} must hold finite real numbers")
        for i, layer in enumerate(self.layers):
            layer.W[...] = weights[2 * i]
            layer.b[...] = weights[2 * i + 1]

    # --- compile --------------------------------------------------------------------------
    def compile(
        self,
        loss=None,
        optimizer="sgd",
        learning_rate=None,
        momentum=None,
        nesterov=None,
        weight_decay=None,
        normalize="keep",
        fused="auto",
        metrics=None,
    ) -> "Sequential":
        """Choose the loss and the optimizer.

        loss: 'binary_crossentropy' | 'categorical_crossentropy' | 'mse' (None: BCE for a
        sigmoid output, CCE for softmax, mse otherwise). optimizer: 'sgd' | 'adam' | an
        optimizer object (fastface.optim.SGD / Adam); learning_rate, momentum, nesterov,
        weight_decay configure a named optimizer. normalize: None | 'standard' (default: keep
        the model's setting). fused: 'auto' | True | False (force the training path).
        metrics is accepted for Keras compatibility (accuracy is always reported for
        classification losses).
        """
        if not self.layers:
            raise ValueError("compile: the model has no layers")
        last = self.layers[-1].activation
        if loss is None:
            loss = {"sigmoid": "binary_crossentropy", "softmax": "categorical_crossentropy"}.get(last, "mse")
        losses.check_loss(loss)
        self.optimizer = optim.get(
            optimizer, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
        if normalize != "keep":
            if normalize not in NORMALIZE:
                raise ValueError(f"compile: normalize must be one of {list(NORMALIZE)}; got {normalize!r}")
            if self._mean is not None and normalize != self.input_contract["normalize"]:
                raise ValueError("compile: the input normalisation was already fitted; it cannot change now")
            self.input_contract["normalize"] = normalize
        if fused not in ("auto", True, False):
            raise ValueError(f"compile: fused must be 'auto', True or False; got {fused!r}")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics must be a list such as ['accuracy']; got {metrics!r}")
        self.fused = fused
        self.loss = loss
        return self

    @property
    def _metric(self) -> str:
        last = self.layers[-1].activation
        if self.loss == "categorical_crossentropy" or last == "softmax":
            return "argmax"
        if self.loss == "binary_crossentropy" or last == "sigmoid":
            return "binary"
        return "none"

    def uses_fused_path(self, batch_size: int = 32) -> bool:
        """True when fit would train on the fused path with this batch size."""
        if self.fused is True or self.fused is False:
            return self.fused
        if self.backend not in (None, "numba") or not self.built:
            return False
        return _fused.fits_in_cache(self.layer_sizes, batch_size, self.dtype.itemsize)

    # --- inputs ---------------------------------------------------------------------------
    def _as_inputs(self, X, where, finite=True):
        """Raw X -> (N, IN) array of the model's dtype (images flattened), checked."""
        arr = X if isinstance(X, np.ndarray) else np.asarray(X)
        _refuse_kind(arr, "X", where)
        if arr.ndim == 0:
            raise ValueError(f"{where}: X must be (N, IN) (or images (N, H, W)); got a scalar")
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        elif arr.ndim > 2:
            arr = arr.reshape(arr.shape[0], -1)
        if arr.shape[0] == 0:
            raise ValueError(f"{where}: X is empty (N = 0); give at least one example")
        if self.input_dim is not None and arr.shape[1] != self.input_dim:
            raise ValueError(
                f"{where}: X has {arr.shape[1]} features per example (shape {tuple(np.shape(X))}); "
                f"the model expects {self.input_dim}. Flatten images row-major to (N, {self.input_dim})"
            )
        arr = arr.astype(self.dtype, copy=False)
        if finite:
            _check_finite(arr, "X", where)
        return arr

    def _scan(self, X, name, where):
        """(min, max) of X, raising the ValueError of _check_finite when X holds NaN/inf.

        NumPy's min and max propagate NaN, and an inf is the max or the min, so two finite
        extremes prove every element finite; otherwise every element is checked (for the
        message). Two passes over X instead of three with a separate finite check.
        """
        lo, hi = float(X.min()), float(X.max())
        if X.dtype.kind == "f" and not (math.isfinite(lo) and math.isfinite(hi)):
            _check_finite(X, name, where)
        return lo, hi

    def _record_range(self, lo, hi):
        """Widen the recorded training input range to include [lo, hi]."""
        old = self.input_contract.get("range")
        if old is not None:
            lo, hi = min(lo, old[0]), max(hi, old[1])
        self.input_contract["range"] = [lo, hi]

    def _range_ok(self, lo, hi) -> bool:
        rng = self.input_contract.get("range")
        if rng is None:
            return True
        tlo, thi = rng
        span = thi - tlo
        if span <= 0:
            return True
        if hi > thi + 2 * span or lo < tlo - 2 * span:
            return False  # e.g. 0..255 pixels into a model trained on 0..1
        dspan = hi - lo
        if thi > 2 and 0 < dspan and dspan * 20 < span and hi * 20 < thi:
            return False  # e.g. 0..1 data into a model trained on 0..255
        return True

    def _warn_range(self, lo, hi):
        self._warned_range = True
        tlo, thi = self.input_contract["range"]
        hint = ""
        if thi <= 1.5 and hi > 2:
            hint = " It looks like 0..255 pixels given to a model trained on 0..1: divide by 255."
        elif thi > 2 and hi <= 1.5:
            hint = " It looks like 0..1 data given to a model trained on 0..255: multiply by 255."
        warnings.warn(
            f"predict: the inputs range over [{lo:.4g}, {hi:.4g}] but the model was trained on "
            f"[{tlo:.4g}, {thi:.4g}].{hint} The model does not rescale by itself "
            "(this warning is shown once per model)",
            InputRangeWarning,
            stacklevel=3,
        )

    @property
    def input_mean(self):
        """Per-feature mean (IN,) of normalize='standard' fitted by the first fit, else None."""
        return None if self._mean is None else self._mean.copy()

    @property
    def input_std(self):
        """Per-feature std (IN,) of normalize='standard' (zeros replaced by 1), else None."""
        return None if self._std is None else self._std.copy()

    def _normalize(self, X):
        if self._mean is None:
            return X
        return ((X - self._mean) / self._std).astype(self.dtype, copy=False)

    def transform_inputs(self, X):
        """What the first layer sees for raw X: (N, IN) in the model's dtype, normalised."""
        self._need_built("transform_inputs")
        return self._normalize(self._as_inputs(X, "transform_inputs"))

    def _targets(self, y, N, where):
        """y -> (N, OUT) float targets of the model's dtype, and the labels (N,) used by class_weight."""
        arr = y if isinstance(y, np.ndarray) else np.asarray(y)
        _refuse_kind(arr, "y", where, kinds="biuf")
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        _check_finite(arr, "y", where)
        OUT = self.layers[-1].units
        if arr.shape[0:1] != (N,):
            raise ValueError(f"{where}: y must have one entry per example of X (N = {N}); got shape {arr.shape}")
        if self.loss == "categorical_crossentropy" and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and OUT > 1)):
            labels = arr.reshape(-1)
            if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
                raise ValueError(f"{where}: integer class labels expected in y (N,); got fractional values")
            labels = labels.astype(np.int64)
            if labels.min() < 0 or labels.max() >= OUT:
                raise ValueError(
                    f"{where}: labels must lie in 0..{OUT - 1} for a {OUT}-unit softmax output; got "
                    f"values from {labels.min()} to {labels.max()}. Map them with np.unique(y, return_inverse=True)"
                )
            Y = np.zeros((N, OUT), dtype=self.dtype)
            Y[np.arange(N), labels] = 1
            return Y, labels
        if arr.ndim == 1 and OUT == 1:
            arr = arr.reshape(N, 1)
        if arr.ndim != 2 or arr.shape[1] != OUT:
            expect = "(N,) integer labels or " if self.loss == "categorical_crossentropy" else ""
            expect += f"(N, {OUT})" + (" or (N,)" if OUT == 1 else "")
            raise ValueError(f"{where}: y must be {expect} for this model; got shape {arr.shape}")
        Y = arr.astype(self.dtype)
        if self.loss == "binary_crossentropy" and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(
                f"{where}: binary cross-entropy needs targets in [0, 1]; got values from {Y.min()} to "
                f"{Y.max()}. For several classes use a softmax output with categorical_crossentropy"
            )
        labels = Y.argmax(axis=1) if OUT > 1 else (Y[:, 0] >= 0.5).astype(np.int64)
        return Y, labels

    def _sample_weights(self, sample_weight, class_weight, labels, N, where):
        w = np.ones(N, dtype=self.dtype)
        if sample_weight is not None:
            sw = np.asarray(sample_weight)
            _refuse_kind(sw, "sample_weight", where)
            if sw.shape != (N,):
                raise ValueError(f"{where}: sample_weight must be (N,) = ({N},); got shape {sw.shape}")
            if not np.all(np.isfinite(sw)) or sw.min() < 0:
                raise ValueError(f"{where}: sample_weight must be finite and >= 0")
            w *= sw.astype(self.dtype)
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{where}: class_weight must be a dict {{label: weight}}; got {type(class_weight).__name__}")
            present = set(np.unique(labels).tolist())
            for key, value in class_weight.items():
                if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
                    raise ValueError(f"{where}: class_weight keys must be integer labels; got {key!r}")
                if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value >= 0):
                    raise ValueError(f"{where}: class_weight[{key}] must be a finite number >= 0; got {value!r}")
            missing = present - set(int(k) for k in class_weight)
            if missing:
                raise ValueError(f"{where}: class_weight has no weight for label(s) {sorted(missing)}")
            table = np.zeros(max(present | set(int(k) for k in class_weight)) + 1, dtype=self.dtype)
            for key, value in class_weight.items():
                table[int(key)] = value
            w *= table[labels]
        return w

    # --- training -------------------------------------------------------------------------
    def fit(
        self,
        X,
        y,
        epochs=1,
        batch_size=32,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        verbose=1,
        callbacks=None,
    ) -> History:
        """Train; returns a History (``history["loss"]``, ``["accuracy"]``, ``["val_..."]``).

        X (N, IN) (or images (N, H, W)); y: 0/1 labels (N,) for a sigmoid output, integer
        labels (N,) or one-hot (N, C) for softmax, targets (N, OUT) otherwise. Repeated calls
        continue training (weights and optimizer state are kept). A NaN/inf loss raises
        TrainingDivergedError naming the epoch and batch; the weights stay finite.
        """
        where = "fit"
        if self.loss is None:
            raise ValueError("fit: call compile(loss=..., optimizer=...) first")
        for name, value, lo in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ValueError(f"fit: {name} must be an int >= {lo}; got {value!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"fit: verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch); got {verbose!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"fit: shuffle must be True or False; got {shuffle!r}")
        try:
            validation_split = float(validation_split)
        except (TypeError, ValueError):
            raise TypeError(f"fit: validation_split must be a number in [0, 1); got {validation_split!r}") from None
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must lie in [0, 1); got {validation_split}")
        if validation_split and validation_data is not None:
            raise ValueError("fit: give validation_split or validation_data, not both")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be fastface.callbacks.Callback objects; got {type(cb).__name__}")

        Xr = self._as_inputs(X, where, finite=False)
        x_range = self._scan(Xr, "X", where)  # range and finite check (min and max)
        self.build(Xr.shape[1])
        N = Xr.shape[0]
        Y, labels = self._targets(y, N, where)
        w = self._sample_weights(sample_weight, class_weight, labels, N, where)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be a tuple (X_val, y_val) or (X_val, y_val, sample_weight)")
            Xv = self._as_inputs(validation_data[0], "fit (validation_data)")
            Yv, _ = self._targets(validation_data[1], Xv.shape[0], "fit (validation_data)")
            wv = None if len(validation_data) == 2 else self._sample_weights(validation_data[2], None, None, Xv.shape[0], where)
            val = (Xv, Yv, wv)
        elif validation_split:
            n_val = int(math.floor(N * validation_split))
            if n_val < 1 or n_val >= N:
                raise ValueError(f"fit: validation_split={validation_split} of N={N} leaves no validation or no training examples")
            cut = N - n_val  # the last examples, before shuffling, as Keras does
            val = (Xr[cut:], Y[cut:], None if np.all(w[cut:] == 1) else w[cut:])
            Xr, Y, w, N = Xr[:cut], Y[:cut], w[:cut], cut

        self._record_range(*x_range)
        if self.input_contract["normalize"] == "standard" and self._mean is None:
            mean = Xr.mean(axis=0, dtype=np.float64)
            std = Xr.std(axis=0, dtype=np.float64)
            std[std < 1e-8] = 1.0
            self._mean = mean.astype(self.dtype)
            self._std = std.astype(self.dtype)
            self._one = None  # the one-example fast path skips normalisation
        Xt = np.ascontiguousarray(self._normalize(Xr))
        if val is not None:
            val = (self._normalize(val[0]), val[1], val[2])
        Y = np.ascontiguousarray(Y)
        self.optimizer.build(self.theta.size, self.dtype)

        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": N}
        self.history = history
        self.stop_training = False
        if verbose:
            callbacks = callbacks + [ProgressBar(epochs, N, verbose)]
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin({})

        fused = self.uses_fused_path(batch_size)
        B = int(min(batch_size, N))
        state = _EpochState(self, Xt, Y, w, B, fused)
        metric = self._metric
        try:
            for epoch in range(epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {})
                perm = self._rng.permutation(N) if shuffle else np.arange(N)
                loss_sum, correct, counted = state.run(perm.astype(np.int64, copy=False), epoch, history)
                logs = {"loss": loss_sum / N}
                if metric != "none":
                    logs["accuracy"] = correct / counted
                if val is not None:
                    for key, value in self._evaluate_arrays(*val).items():
                        logs["val_" + key] = value
                history.append(epoch, logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            for cb in callbacks:
                cb.on_train_end({})
        return history

    # --- inference ------------------------------------------------------------------------
    def _check_range_once(self, X):
        if not self._warned_range and self.input_contract.get("range") is not None:
            lo, hi = float(X.min()), float(X.max())
            if not self._range_ok(lo, hi):
                self._warn_range(lo, hi)

    def predict(self, X, batch_size=None, verbose=0):
        """Probabilities (outputs of the last layer), (N, OUT); X raw (N, IN) or one example (IN,).

        One example of the model's dtype takes a compiled path with a reused workspace
        (microseconds); the result is always a new array. That workspace belongs to the model:
        do not call predict on the same model from several threads at once.
        """
        one = self._one
        if (
            one is not None
            and type(X) is np.ndarray
            and X.dtype == self.dtype
            and X.size == self.input_dim
            and (X.ndim == 1 or X.shape[0] == 1)
        ):
            lo, hi = _fused.predict_one(X.reshape(1, -1), self.theta, one[0], one[1])
            if lo != lo:
                raise ValueError("predict: X holds NaN or infinite values; remove or impute them first")
            if not self._warned_range and not self._range_ok(lo, hi):
                self._warn_range(lo, hi)
            return one[2].copy()
        self._need_built("predict")
        Xr = self._as_inputs(X, "predict")
        self._check_range_once(Xr)
        if self._mean is None and self._one is None and Xr.shape[0] == 1:
            self._prepare_one()
            return self.predict(np.ascontiguousarray(Xr))
        return self._predict_arrays(self._normalize(Xr), batch_size)

    def _prepare_one(self):
        """Workspace of the one-example path: table, A, and the view of A holding the output."""
        table = self._table(1)
        A = self._workspace(1)
        last = table[-1]
        self._one = (table, A, A[last[4] : last[4] + last[1]].reshape(1, last[1]))

    def _predict_arrays(self, Xt, batch_size=None):
        B = 256 if batch_size is None else int(batch_size)
        if self.uses_fused_path(B):
            B = min(B, Xt.shape[0])
            out = np.empty((Xt.shape[0], self.layers[-1].units), dtype=self.dtype)
            xb = np.empty((B, self.input_dim), dtype=self.dtype)
            _fused.predict_into(Xt, self.theta, self._table(B), self._workspace(B), xb, out)
            return out
        a = Xt
        for layer in self.layers:
            a = ops.dense_forward(a, layer.W, layer.b, layer.activation, backend=self.backend)
        return a

    def forward_all(self, X) -> list:
        """Every layer's activation for raw X: [x, a1, ..., aL]; x is the (normalised) network input.

        x (N, IN), a_l (N, OUT_l), arrays of the model's dtype, computed by fastface.ops.
        """
        self._need_built("forward_all")
        out = [self._normalize(self._as_inputs(X, "forward_all"))]
        for layer in self.layers:
            out.append(ops.dense_forward(out[-1], layer.W, layer.b, layer.activation, backend=self.backend))
        return out

    def predict_classes(self, X, threshold=0.5):
        """Class labels (N,): argmax for a softmax (or multi-unit) output; for one sigmoid unit
        the rule ``p >= threshold`` (the course's rule) gives 1, else 0."""
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise TypeError(f"predict_classes: threshold must be a number; got {threshold!r}") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"predict_classes: threshold must lie in [0, 1]; got {threshold}")
        p = self.predict(X)
        if p.shape[1] == 1:
            return (p[:, 0] >= threshold).astype(np.int64)
        if self.layers[-1].activation == "softmax" or self.loss == "categorical_crossentropy":
            return p.argmax(axis=1)
        return (p >= threshold).astype(np.int64)

    def _logits_and_outputs(self, Xt):
        a = Xt
        for layer in self.layers[:-1]:
            a = ops.dense_forward(a, layer.W, layer.b, layer.activation, backend=self.backend)
        last = self.layers[-1]
        z = ops.dense_forward(a, last.W, last.b, "linear", backend=self.backend)
        return z

    def _evaluate_arrays(self, Xt, Y, w):
        z = self._logits_and_outputs(Xt)
        act = self.layers[-1].activation
        value, a, _ = losses.loss_and_dz(self.loss, act, z, Y, w)
        out = {"loss": float(value)}
        metric = self._metric
        if metric == "argmax":
            out["accuracy"] = float(np.mean(a.argmax(axis=1) == Y.argmax(axis=1)))
        elif metric == "binary":
            out["accuracy"] = float(np.mean((a >= 0.5) == (Y >= 0.5)))
        return out

    def evaluate(self, X, y, sample_weight=None, batch_size=None, verbose=0) -> dict:
        """{"loss": ..., "accuracy": ...} (accuracy for classification losses) on X, y."""
        if self.loss is None:
            raise ValueError("evaluate: call compile(loss=...) first")
        self._need_built("evaluate")
        Xr = self._as_inputs(X, "evaluate")
        Y, labels = self._targets(y, Xr.shape[0], "evaluate")
        w = None if sample_weight is None else self._sample_weights(sample_weight, None, labels, Xr.shape[0], "evaluate")
        return self._evaluate_arrays(self._normalize(Xr), Y, w)

    # --- display --------------------------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        lines = [f'Model: "{self.name or "sequential"}"  (dtype {self.dtype.name}, backend {self.backend or "auto"})']
        lines.append(f"{'Layer':<28}{'Output shape':<18}{'Params':>10}")
        lines.append("-" * 56)
        total = 0
        for i, layer in enumerate(self.layers):
            n = layer.count_params()
            total += n
            label = f"{layer.name or f'dense_{i}'} ({layer.activation})"
            lines.append(f"{label:<28}{str((None, layer.units)):<18}{n if layer.built else '?':>10}")
        lines.append("-" * 56)
        lines.append(f"Total params: {total if self.built else 'unknown until built'}  (input_dim={self.input_dim})")
        if self.loss is not None:
            lines.append(f"Loss: {self.loss}   Optimizer: {self.optimizer!r}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_dim={self.input_dim}, dtype={self.dtype.name!r}, seed={self.seed})"

    # --- files ----------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write the model to `path` (.npz arrays + JSON metadata, no pickle, atomic)."""
        self._need_built("save")
        arrays = {}
        for i, layer in enumerate(self.layers):
            arrays[f"W{i}"] = layer.W
            arrays[f"b{i}"] = layer.b
        if self._mean is not None:
            arrays["input_mean"] = self._mean
            arrays["input_std"] = self._std
        opt = None
        if self.optimizer is not None:
            opt = self.optimizer.get_config()
            if self.optimizer.s1 is not None:
                arrays["opt_s1"] = self.optimizer.s1
                arrays["opt_s2"] = self.optimizer.s2
                arrays["opt_t"] = self.optimizer.t
        from . import __version__

        meta = {
            "fastface_version": __version__,
            "name": self.name,
            "input_dim": self.input_dim,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "backend": self.backend,
            "layers": [layer.get_config() for layer in self.layers],
            "loss": self.loss,
            "optimizer": opt,
            "fused": self.fused,
            "input_contract": {"normalize": self.input_contract["normalize"], "range": self.input_contract["range"]},
            "meta": self.meta,
        }
        return save_npz(path, arrays, meta, format=FORMAT, format_version=FORMAT_VERSION)


class _EpochState:
    """Buffers of one fit, allocated once; `run` trains one epoch on the chosen path."""

    def __init__(self, model: Sequential, X, Y, w, B, fused):
        self.m = model
        self.X, self.Y, self.w, self.B, self.fused = X, Y, w, B, fused
        self.weighted = not bool(np.all(w == 1))
        self.table = model._table(B)
        self.stats = np.zeros(4, dtype=np.float64)
        self.pair = None
        if fused:
            self.A = model._workspace(B)
            self.D = model._workspace(B)
            self.xb = np.empty((B, X.shape[1]), dtype=X.dtype)
            self.loss_code = _fused.LOSS_CODES[model.loss]
            self.metric_code = _fused.METRIC_CODES[model._metric]
            if _fused_pair.worthwhile(self.table, B, X.shape[0]):
                self.pair = _fused_pair.Workspace(self.table, B, model.dtype)

    def run(self, perm, epoch, history):
        m = self.m
        opt = m.optimizer
        if self.fused:
            hyper = opt.hyper(m.dtype)
            status = _fused_pair.NO_PAIR
            if self.pair is not None:
                status = _fused_pair.train_epoch(
                    self.X, self.Y, self.w, perm, m.theta, opt.s1, opt.s2, self.table, self.loss_code,
                    self.metric_code, opt.code, hyper, opt.t, self.pair, self.stats,
                )
                if status == _fused_pair.NO_PAIR:  # nothing changed: this epoch, and the rest, serially
                    _fused_pair.failed = True
                    self.pair = None
            if status == _fused_pair.NO_PAIR:
                status = _fused.train_epoch(
                    self.X, self.Y, self.w, perm, m.theta, m._grad, opt.s1, opt.s2, self.table, self.loss_code,
                    self.metric_code, opt.code, hyper, opt.t, self.A, self.D, self.xb, self.stats,
                )
            if status:
                self._diverged(status, epoch, int(self.stats[3]), history)
            return self.stats[0], self.stats[1], self.stats[2]
        return self._run_layers(perm, epoch, history)

    def _run_layers(self, perm, epoch, history):
        m = self.m
        layers = m.layers
        backend = m.backend
        metric = m._metric
        act = layers[-1].activation
        N = perm.shape[0]
        loss_sum = correct = counted = 0.0
        grads = []
        for i, (fan_in, fan_out, wo, bo) in enumerate(m._rows):  # dW^T (OUT, IN) and db views
            grads.append((m._grad[wo:bo].reshape(fan_out, fan_in), m._grad[bo : bo + fan_out]))
        for batch, start in enumerate(range(0, N, self.B)):
            idx = perm[start : start + self.B]
            xs = [self.X[idx]]
            yb = self.Y[idx]
            wb = self.w[idx] if self.weighted else None
            for layer in layers[:-1]:
                xs.append(ops.dense_forward(xs[-1], layer.W, layer.b, layer.activation, backend=backend))
            z = ops.dense_forward(xs[-1], layers[-1].W, layers[-1].b, "linear", backend=backend)
            value, a, dz = losses.loss_and_dz(m.loss, act, z, yb, wb)
            if not math.isfinite(value):
                self._diverged(1, epoch, batch, history)
            if metric == "argmax":
                correct += float(np.sum(a.argmax(axis=1) == yb.argmax(axis=1)))
                counted += len(idx)
            elif metric == "binary":
                correct += float(np.sum((a >= 0.5) == (yb >= 0.5)))
                counted += a.size
            # backward: dz of each layer, then dW^T = dz^T x (written straight into the
            # transposed storage, no transposing copy), db = sum dz, dx = dz W^T
            dz = dz.astype(m.dtype, copy=False)
            for l in range(len(layers) - 1, -1, -1):
                if l < len(layers) - 1:
                    dz = DERIVATIVES[layers[l].activation](xs[l + 1], da)
                gWT, gb = grads[l]
                gWT[...] = ops.matmul(dz.T, xs[l], backend=backend)
                np.sum(dz, axis=0, out=gb)
                if l > 0:  # the first layer needs no dx
                    da = ops.matmul(dz, layers[l].W.T, backend=backend)  # W.T: C-contiguous storage
            loss_sum += value * len(idx)
            if not m.optimizer.step(m.theta, m._grad, self.table):
                self._diverged(2, epoch, batch, history)
        return loss_sum, correct, counted

    def _diverged(self, status, epoch, batch, history):
        why = (
            "the loss or its gradient became NaN/inf"
            if status == 1
            else "the gradient or a weight update became NaN/inf"
        )
        raise TrainingDivergedError(
            f"fit: training diverged at epoch {epoch + 1}, batch {batch + 1}: {why}. The model keeps "
            "its last finite weights. Lower the learning rate, scale the inputs (e.g. to 0..1), or "
            "check the targets",
            epoch=epoch,
            batch=batch,
            history=history,
        )


def load_model(path) -> Sequential:
    """Read a model written by :meth:`Sequential.save` (compiled again when it was compiled).

    Raises ValueError for corrupt, truncated, tampered or foreign files.
    """
    arrays, meta = load_npz(path, FORMAT, max_version=FORMAT_VERSION)
    try:
        layers = [Dense(c["units"], c["activation"], name=c.get("name")) for c in meta["layers"]]
        backend = meta.get("backend")
        try:
            if backend is not None:
                _get_backend(backend)
        except Exception:
            backend = None  # saved on a machine with a backend this one lacks
        contract = meta["input_contract"]
        model = Sequential(
            layers, input_dim=meta["input_dim"], dtype=meta["dtype"], backend=backend, seed=meta["seed"],
            normalize=contract["normalize"], name=meta.get("name"),
        )
        weights = []
        for i in range(len(layers)):
            weights += [arrays[f"W{i}"], arrays[f"b{i}"]]
        model.set_weights(weights)
        model.input_contract["range"] = contract["range"]
        if "input_mean" in arrays:
            model._mean = arrays["input_mean"].astype(model.dtype)
            model._std = arrays["input_std"].astype(model.dtype)
        if meta.get("loss") is not None:
            opt = optim.from_config(meta["optimizer"]) if meta.get("optimizer") else "sgd"
            model.compile(loss=meta["loss"], optimizer=opt, fused=meta.get("fused", "auto"))
            if "opt_s1" in arrays:
                model.optimizer.build(model.theta.size, model.dtype)
                model.optimizer.s1[...] = arrays["opt_s1"]
                model.optimizer.s2[...] = arrays["opt_s2"]
                model.optimizer.t[...] = arrays["opt_t"]
        model.meta = meta.get("meta") or {}
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"{path!r} is a fastface model file with inconsistent contents ({exc}); save it again") from None
    return model
