"""Identifier: who of the known people is this? Softmax over the people, top-k, "unknown".

Shapes: images (N, H, W) uint8 0..255 or float 0..1; target (N,) integer person ids
0..C-1; predict_proba -> (N, C); predict -> (N,) ids, -1 = unknown; top_k -> ids (N, k) and
probabilities (N, k).
"""

from __future__ import annotations

import numpy as np

from . import metrics
from ._base import FaceModel
from .preprocess import check_target

__all__ = ["Identifier", "UNKNOWN"]

UNKNOWN = -1


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Identifier(FaceModel):
    """Softmax over the known people on a whitened, normalised front end (150 components,
    whitening shrunk by whiten_reg=0.1 so the faint components do not drown the strong ones),
    trained with shifted and mirrored copies of each photo and weight decay.

    Probabilities are temperature-scaled (T fitted on `validation` photos when given).
    "Unknown": a photo whose top probability is below `unknown_threshold` gets the id -1
    (:data:`UNKNOWN`). Set the threshold from held-out data with :meth:`tune_unknown`:
    held-out photos of known people (and, when you have them, photos of strangers labelled
    -1); the threshold is chosen for a target false-accept rate on the strangers (`far`), or
    without strangers to keep a fraction `frr` of genuine photos rejected at most. Or set
    ``identifier.unknown_threshold = 0.6`` by hand (None: never unknown).

    :meth:`enroll` adds a new person from a few photos without retraining the network: the
    hidden layers stay fixed and only the output layer is trained again, on the stored hidden
    features of the training photos plus the new person's.
    """

    kind = "identify"

    def __init__(self, hidden=(128,), *, activation="tanh", normalize=True, whiten=150, whiten_reg=0.1,
                 illumination=False, shifts=2, mirror=True, epochs=30, batch_size=64, learning_rate=1e-3,
                 weight_decay=1e-4, seed=0, verbose=0):
        super().__init__(hidden=hidden, activation=activation, normalize=normalize, whiten=whiten,
                         whiten_reg=whiten_reg, illumination=illumination,
                         shifts=shifts, mirror=mirror, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, weight_decay=weight_decay, seed=seed, verbose=verbose)
        self.temperature = 1.0
        self.unknown_threshold = None
        self.bank_h = None  # hidden features of the training photos (for enroll)
        self.bank_y = None

    def _state(self):
        return {"temperature": self.temperature, "unknown_threshold": self.unknown_threshold}

    def _state_arrays(self):
        return {"bank_h": self.bank_h, "bank_y": self.bank_y}

    def _set_state(self, state, arrays):
        self.temperature = float(state["temperature"])
        self.unknown_threshold = state["unknown_threshold"]
        self.bank_h, self.bank_y = arrays["bank_h"], arrays["bank_y"]

    def fit(self, images, target, names=None, validation=None):
        """Train on photos (N, H, W) and ids (N,) in 0..C-1; `validation` = (images, target) of
        held-out photos of the same people tunes the temperature. Returns self."""
        x, t = self._fit_inputs(images, target)
        C = int(t.max()) + 1
        if t.min() < 0 or len(np.unique(t)) < 2:
            raise ValueError(f"Identifier.fit: need ids 0..C-1 of at least two people; got ids "
                             f"{np.unique(t)[:10]}")
        if names is not None and len(names) < C:
            raise ValueError(f"Identifier.fit: names has {len(names)} entries but the ids go up to {C - 1}")
        self.names = list(names)[:C] if names is not None else [str(i) for i in range(C)]
        self._fit_frontend(x)
        self.model = self._train(x, t, C, "softmax")
        self.bank_h = self._hidden_features(self.frontend.transform(x))
        self.bank_y = t.copy()
        self.temperature = 1.0
        if validation is not None:
            self.calibrate(*validation)
        return self

    def _hidden_features(self, F):
        return self.model.forward_all(F)[-2].astype(np.float32)

    def calibrate(self, images, target):
        """Fit the softmax temperature on held-out photos of known people; returns T."""
        F = self._features(images, "calibrate")
        t = check_target(target, F.shape[0], "Identifier.calibrate")
        if t.min() < 0 or t.max() >= len(self.names):
            raise ValueError(f"Identifier.calibrate: ids must be known people 0..{len(self.names) - 1}")
        z = self._logits(F)
        best = (np.inf, 1.0)
        for T in np.exp(np.linspace(np.log(0.05), np.log(20.0), 121)):
            s = z / T
            nll = float(np.mean(np.logaddexp.reduce(s, axis=1) - s[np.arange(len(t)), t]))
            best = min(best, (nll, float(T)))
        self.temperature = best[1]
        return self.temperature

    def predict_proba(self, images):
        """P(person c | photo), (N, C), temperature-scaled softmax."""
        return _softmax(self._logits(self._features(images, "predict_proba", single=True)) / self.temperature)

    def predict(self, images):
        """Person ids (N,); -1 (UNKNOWN) where the top probability < unknown_threshold."""
        P = self.predict_proba(images)
        ids = P.argmax(axis=1)
        if self.unknown_threshold is not None:
            ids = np.where(P.max(axis=1) >= self.unknown_threshold, ids, UNKNOWN)
        return ids

    def predict_names(self, images):
        """Names (list of str), 'unknown' for rejected photos."""
        return [self.names[i] if i >= 0 else "unknown" for i in self.predict(images)]

    def top_k(self, images, k=3):
        """The k most likely people per photo: (ids (N, k), probabilities (N, k)), best first."""
        P = self.predict_proba(images)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= P.shape[1]:
            raise ValueError(f"Identifier.top_k: k must be an integer in 1..{P.shape[1]} (known people); got {k!r}")
        ids = np.argsort(-P, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(P, ids, axis=1)

    def tune_unknown(self, images, target, *, far=None, frr=0.05):
        """Set unknown_threshold from held-out labelled photos; returns it.

        target: ids of known people, -1 for strangers. With strangers and `far` given, the
        threshold is the lowest whose stranger false-accept rate is <= far; otherwise the
        highest that rejects at most a fraction `frr` of the known people's photos.
        """
        P = self.predict_proba(images)
        t = check_target(target, P.shape[0], "Identifier.tune_unknown")
        conf = P.max(axis=1)
        known = t >= 0
        if far is not None:
            if known.all() or not known.any():
                raise ValueError("Identifier.tune_unknown: far needs photos of known people and of strangers "
                                 "(target -1)")
            self.unknown_threshold = metrics.threshold_at_far(known.astype(int), conf, far)
        else:
            if not known.any():
                raise ValueError("Identifier.tune_unknown: no photo of a known person; pass some or use far=")
            if not 0.0 <= frr < 1.0:
                raise ValueError(f"Identifier.tune_unknown: frr must lie in [0, 1); got {frr}")
            self.unknown_threshold = float(np.quantile(conf[known], frr, method="lower"))
        return self.unknown_threshold

    def enroll(self, images, name, *, epochs=100):
        """Add a new person from a few photos (N >= 1) without retraining the hidden layers.

        Returns the new person's id. The output layer gets one more unit, initialised from the
        mean hidden features of the new photos, then is trained (hidden layers frozen) on the
        stored training features plus the new person's, augmented.
        """
        from ..model import Dense, Sequential
        from .preprocess import augment

        self._need_fit("enroll")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Identifier.enroll: name must be a non-empty string; got {name!r}")
        if name in self.names:
            raise ValueError(f"Identifier.enroll: {name!r} is already known (id {self.names.index(name)})")
        x = self._images(images, "enroll", single=True)
        new_id = len(self.names)
        xa, _ = augment(x, np.zeros(len(x), np.int64), shifts=self.shifts, mirror=self.mirror)
        h_new = self._hidden_features(self.frontend.transform(xa))
        H = np.concatenate([self.bank_h, h_new])
        y = np.concatenate([self.bank_y, np.full(len(h_new), new_id, np.int64)])
        last = self.model.layers[-1]
        w_new = h_new.mean(axis=0) - self.bank_h.mean(axis=0)
        w_new *= np.linalg.norm(last.W, axis=0).mean() / (np.linalg.norm(w_new) + 1e-12)
        head = Sequential([Dense(new_id + 1, "softmax")], input_dim=H.shape[1], seed=self.seed)
        head.set_weights([np.concatenate([last.W, w_new[:, None]], axis=1),
                          np.concatenate([last.b, [last.b.mean()]])])
        head.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=self.learning_rate,
                     weight_decay=self.weight_decay)
        counts = np.bincount(y)
        head.fit(H, y, epochs=epochs, batch_size=self.batch_size,
                 class_weight={c: len(y) / (len(counts) * counts[c]) for c in range(len(counts))}, verbose=0)
        weights = self.model.get_weights()[:-2] + head.get_weights()
        layers = [Dense(layer.units, layer.activation) for layer in self.model.layers[:-1]]
        net = Sequential(layers + [Dense(new_id + 1, "softmax")], input_dim=self.model.input_dim, seed=self.seed)
        net.set_weights(weights)
        self.model = net
        self.names.append(name)
        self.bank_h = np.concatenate([self.bank_h, self._hidden_features(self.frontend.transform(x))])
        self.bank_y = np.concatenate([self.bank_y, np.full(len(x), new_id, np.int64)])
        return new_id
