"""Shared machinery of the face models: front end + fastface network, training, save/load.

Shapes: images (N, H, W) uint8 0..255 or float 0..1; features F (N, D) from the front end
(D = whitening components, or H*W without whitening); network outputs (N, OUT).

Every face model is saved through fastface.io (``.npz`` arrays + JSON metadata, atomic, no
pickle) with format name ``fastface.faces``; :func:`load` reads any of them back.
"""

from __future__ import annotations

import numpy as np

from ..io import load_npz, save_npz
from .preprocess import FrontEnd, as_images, augment, check_target

__all__ = ["FaceModel", "load", "FORMAT", "platt_fit", "sigmoid"]

FORMAT = "fastface.faces"
FORMAT_VERSION = 1
_KINDS: dict = {}


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def platt_fit(z, y, weights=None, iters=100, smooth=True, ridge=1e-6):
    """Fit P(y=1) = sigmoid(a z + b) by Newton's method on the log-loss -> (a, b).

    z (N,) scores, y (N,) 0/1, weights (N,) or None. smooth=True uses Platt's targets
    (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0 (keeps the fit finite on separable
    scores, but caps P at (N+ + 1)/(N+ + 2): with 5 positives, 0.857); `ridge` (an L2 penalty
    on (a, b)) keeps hard 0/1 targets finite instead.
    """
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    n_pos, n_neg = w[y == 1].sum(), w[y == 0].sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)) if smooth else y
    A = np.stack([z, np.ones_like(z)], axis=1)

    def loss(theta):
        s = A @ theta
        return float(np.sum(w * (np.logaddexp(0.0, s) - t * s)) + 0.5 * ridge * theta @ theta)

    theta = np.array([1.0 / max(float(np.std(z)), 1e-12), 0.0])
    theta[1] = -theta[0] * float(np.mean(z))
    current = loss(theta)
    for _ in range(iters):
        p = sigmoid(A @ theta)
        g = A.T @ (w * (p - t)) + ridge * theta
        H = (A * (w * p * (1 - p))[:, None]).T @ A + ridge * np.eye(2)
        step = np.linalg.solve(H, g)
        lr = 1.0
        while lr > 1e-8:  # backtracking: Newton steps never increase the loss
            trial = theta - lr * step
            value = loss(trial)
            if value <= current:
                break
            lr *= 0.5
        else:
            break
        theta, done = trial, current - value < 1e-12 * max(1.0, abs(current))
        current = value
        if done:
            break
    a, b = theta
    return float(a), float(b)


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _hidden(value, where):
    if isinstance(value, (int, np.integer)):
        value = (value,)
    try:
        sizes = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: hidden must be layer sizes such as (25, 15); got {value!r}") from None
    if not sizes or any(s < 1 for s in sizes) or any(float(a) != b for a, b in zip(value, sizes)):
        raise ValueError(f"{where}: hidden must be one or more sizes >= 1 such as (25, 15); got {value!r}")
    return sizes


class FaceModel:
    """Base of PersonClassifier, Identifier, Verifier: photos -> FrontEnd -> Sequential.

    Training options common to all three (constructor keywords):
      normalize (bool): per-image zero mean / unit std;  illumination (bool): Tan-Triggs
      lighting normalisation first (gamma, difference of Gaussians, contrast equalisation);  whiten (int): PCA whitening
      components (0 = raw pixels);  whiten_reg (float >= 0): shrinkage of the whitening, each
      component divided by sqrt(variance + whiten_reg * mean variance) (0 = pure whitening);
      shifts (int) and mirror (bool): training augmentation;
      epochs, batch_size, learning_rate, weight_decay (L2 on weights, Adam);  seed;
      verbose (0 silent, 1 progress bar).
    """

    kind = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _KINDS[cls.kind] = cls

    def __init__(self, *, hidden, activation, normalize=True, whiten=100, whiten_reg=0.0, illumination=False, shifts=1,
                 mirror=True,
                 epochs=40, batch_size=64, learning_rate=1e-3, weight_decay=1e-4, seed=0, verbose=0):
        where = type(self).__name__
        self.hidden = _hidden(hidden, where)
        from ..activations import check_activation

        self.activation = check_activation(activation)
        self.normalize = bool(normalize)
        self.illumination = bool(illumination)
        self.whiten = _positive_int(f"{where}: whiten", whiten, 0)
        self.shifts = _positive_int(f"{where}: shifts", shifts, 0)
        self.mirror = bool(mirror)
        self.epochs = _positive_int(f"{where}: epochs", epochs, 1)
        self.batch_size = _positive_int(f"{where}: batch_size", batch_size, 1)
        for name, v in (("whiten_reg", whiten_reg), ("learning_rate", learning_rate), ("weight_decay", weight_decay)):
            if not isinstance(v, (int, float, np.floating)) or isinstance(v, bool) or v < 0 or v != v:
                raise ValueError(f"{where}: {name} must be a number >= 0; got {v!r}")
        self.whiten_reg = float(whiten_reg)
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.frontend = None
        self.model = None
        self.names = None

    # --- configuration and state that go into the file -----------------------------------------
    def get_params(self) -> dict:
        return {"hidden": list(self.hidden), "activation": self.activation, "normalize": self.normalize,
                "illumination": self.illumination, "whiten": self.whiten, "whiten_reg": self.whiten_reg,
                "shifts": self.shifts, "mirror": self.mirror,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "seed": self.seed}

    def _state(self) -> dict:
        """JSON state of the subclass (labels, threshold, calibration)."""
        return {}

    def _state_arrays(self) -> dict:
        return {}

    def _set_state(self, state: dict, arrays: dict) -> None:
        pass

    @classmethod
    def _from_params(cls, params: dict):
        return cls(**params)

    # --- helpers -------------------------------------------------------------------------------
    @property
    def shape(self):
        return self.frontend.shape if self.frontend is not None else None

    def _need_fit(self, where):
        if self.model is None:
            raise ValueError(f"{type(self).__name__}.{where}: the model is not trained; call fit(images, target) "
                             "first (or faces.load(path))")

    def _images(self, images, where, single=False):
        return as_images(images, f"{type(self).__name__}.{where}", shape=self.shape, single=single)

    def _features(self, images, where="predict", single=False):
        self._need_fit(where)
        return self.frontend.transform(self._images(images, where, single))

    def _fit_inputs(self, images, target):
        x = as_images(images, f"{type(self).__name__}.fit")
        t = check_target(target, x.shape[0], f"{type(self).__name__}.fit")
        return x, t

    def _fit_frontend(self, x):
        self.frontend = FrontEnd(self.normalize, self.whiten, self.whiten_reg, illumination=self.illumination).fit(x)

    def _training_features(self, x, y):
        """Front-end features (N*M, D) of the training copies of photos x (N, H, W) (shifted and
        mirrored; the N originals come first) and their labels (N*M,)."""
        xa, ya = augment(x, y, shifts=self.shifts, mirror=self.mirror) if (self.shifts or self.mirror) else (x, y)
        return self.frontend.transform(xa), ya

    def _train(self, x, y, out_units, out_activation, *, class_weight=None, epochs=None, seed_offset=0,
               features=None, hidden=None, activation=None, desc=None):
        """Train a fresh network on photos x (N, H, W) float and labels y (N,); returns it.

        features: (F, ya) from :meth:`_training_features` when the caller has them already (x
        and y are then unused). hidden, activation: the hidden layers when not the model's own.
        desc: the label of the progress bar (verbose=1) when the model trains several networks.
        """
        from ..callbacks import ProgressBar
        from ..model import Dense, Sequential

        F, ya = self._training_features(x, y) if features is None else features
        hidden = self.hidden if hidden is None else hidden
        activation = self.activation if activation is None else activation
        layers = [Dense(h, activation) for h in hidden] + [Dense(out_units, out_activation)]
        net = Sequential(layers, input_dim=F.shape[1], seed=self.seed + seed_offset)
        loss = "binary_crossentropy" if out_activation == "sigmoid" else "categorical_crossentropy"
        net.compile(loss=loss, optimizer="adam", learning_rate=self.learning_rate, weight_decay=self.weight_decay)
        epochs = self.epochs if epochs is None else epochs
        bar = [ProgressBar(epochs, len(ya), 1, desc=desc)] if self.verbose else []
        net.fit(F, ya, epochs=epochs, batch_size=self.batch_size, class_weight=class_weight, verbose=0,
                callbacks=bar)
        return net

    def _logits(self, F, net=None):
        """Pre-activation of the output layer, (N, OUT), float64."""
        net = self.model if net is None else net
        acts = net.forward_all(F)
        last = net.layers[-1]
        return acts[-2].astype(np.float64) @ last.W.astype(np.float64) + last.b.astype(np.float64)

    # --- files ---------------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write to `path` (.npz + JSON metadata through fastface.io: atomic, no pickle)."""
        self._need_fit("save")
        arrays = dict(self.frontend.arrays())
        for i, layer in enumerate(self.model.layers):
            arrays[f"W{i}"] = layer.W
            arrays[f"b{i}"] = layer.b
        arrays.update(self._state_arrays())
        meta = {
            "kind": self.kind,
            "params": self.get_params(),
            "frontend": self.frontend.config(),
            "layers": [[layer.units, layer.activation] for layer in self.model.layers],
            "input_dim": self.model.input_dim,
            "names": list(self.names),
            "state": self._state(),
        }
        return save_npz(path, arrays, meta, format=FORMAT, format_version=FORMAT_VERSION)

    def _repr_params(self) -> str:
        return f"hidden={self.hidden}"

    def __repr__(self):
        state = "untrained" if self.model is None else f"{len(self.names)} classes, input {self.shape}"
        return f"{type(self).__name__}({self._repr_params()}, {state})"


def _rebuild(layers, input_dim, weights):
    from ..model import Dense, Sequential

    net = Sequential([Dense(u, a) for u, a in layers], input_dim=input_dim)
    net.set_weights(weights)
    return net


def load(path):
    """Read a PersonClassifier, Identifier or Verifier written by its .save(path)."""
    from . import identify, person, verify  # noqa: F401  (registers the kinds)

    arrays, meta = load_npz(path, FORMAT, max_version=FORMAT_VERSION)
    try:
        cls = _KINDS[meta["kind"]]
        params = dict(meta["params"])
        obj = cls._from_params(params)
        obj.frontend = FrontEnd.from_arrays(meta["frontend"], arrays)
        weights = []
        for i in range(len(meta["layers"])):
            weights += [arrays[f"W{i}"], arrays[f"b{i}"]]
        obj.model = _rebuild(meta["layers"], meta["input_dim"], weights)
        obj.names = list(meta["names"])
        obj._set_state(meta["state"], arrays)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{path!r}: a fastface.faces file with missing or malformed content ({exc!r}); "
                         "save the model again") from exc
    return obj
