"""PersonClassifier: "the probability that this photo shows person XYZ" (one sigmoid unit).

Shapes: images (N, H, W) uint8 0..255 or float 0..1; target (N,) integer person ids;
predict_proba -> (N,) calibrated P(person); predict -> (N,) 0/1 by the rule p >= threshold.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._base import FaceModel, _rebuild, platt_fit, sigmoid

__all__ = ["PersonClassifier"]

IDENTITY_ACTIVATION = "tanh"


class PersonClassifier(FaceModel):
    """The course's one-person model: photo -> hidden sigmoid layers -> P(photo shows `person`).

    Why is the probability for a photo of XYZ not 100%? The network has only seen a handful of
    photos of XYZ, and a new photo differs from all of them in pose, light and expression, so
    some of the evidence always looks like other people. The calibration fitted on held-out
    photos turns the raw score into how often such a score really was XYZ, and that frequency
    is below 1 wherever the held-out photos showed mistakes or near misses.

    person: the id in `target` (or a name in `names` passed to fit). hidden: sizes of the
    sigmoid hidden layers, (25, 15) as in the course. identity (default 128; 0 turns it off):
    the width of a tanh layer put before them and trained first, as a softmax over all the
    people in `target`, then frozen (each fold network of the calibration trains its own, so
    the photos it is calibrated on are new to all its layers). The other people's photos
    teach it what changes within one person and what does not (glasses on or off, light,
    expression), which five photos of XYZ cannot. It is used when `target` holds at least 3
    people (with only "XYZ" and "the rest" there is nothing to learn from), so `.model` has
    the layers (identity, 25, 15, 1).
    On Olivetti (5 photos per person) it raises the mean one-vs-rest AUC from 0.9976 to
    0.9992 (benches/faces_protocols.py). The 1-positive-in-40 imbalance is
    handled by class weights that give both classes equal total weight. calibration:
    'platt' (P = sigmoid(a z + b), default) or 'temperature' (P = sigmoid(z / T)), fitted on
    out-of-fold scores of `cv` folds (stratified), after which the final network is trained
    on all the photos; None skips it. ensemble=True keeps the `cv` fold networks and scores a
    photo by the mean output logit of them and the final network (as scikit-learn's
    CalibratedClassifierCV(ensemble=True) keeps its folds); test_mirror=True also averages
    over the photo's mirror image. Both are saved with the model. `fastface.explain` explains
    the final network (`.model`). See FaceModel for the training options.
    """

    kind = "person"

    def __init__(self, person, hidden=(25, 15), *, identity=128, activation="sigmoid", calibration="platt", cv=3,
                 ensemble=True, test_mirror=True, threshold=0.5, normalize=True, whiten=100, whiten_reg=0.0,
                 illumination=False, shifts=1, mirror=True, epochs=30, batch_size=64, learning_rate=1e-3,
                 weight_decay=1e-4, seed=0, verbose=0):
        super().__init__(hidden=hidden, activation=activation, normalize=normalize, whiten=whiten,
                         whiten_reg=whiten_reg, illumination=illumination,
                         shifts=shifts, mirror=mirror, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, weight_decay=weight_decay, seed=seed, verbose=verbose)
        if isinstance(person, bool) or not isinstance(person, (int, np.integer, str)):
            raise TypeError(f"PersonClassifier: person must be an id (int) or a name (str); got {person!r}")
        if calibration not in ("platt", "temperature", None):
            raise ValueError(f"PersonClassifier: calibration must be 'platt', 'temperature' or None; "
                             f"got {calibration!r}")
        if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
            raise ValueError(f"PersonClassifier: cv must be an integer >= 2 (folds); got {cv!r}")
        if isinstance(identity, bool) or not isinstance(identity, (int, np.integer)) or identity < 0:
            raise ValueError(f"PersonClassifier: identity must be a layer width >= 1, or 0 for none; got {identity!r}")
        self.person = person if isinstance(person, str) else int(person)
        self.identity = int(identity)
        self.calibration = calibration
        self.cv = int(cv)
        self.ensemble = bool(ensemble)
        self.test_mirror = bool(test_mirror)
        self.folds_ = []  # the cv fold networks (kept when ensemble=True)
        self.threshold = _threshold(threshold)
        self.label = None
        self.calib = (1.0, 0.0)

    def get_params(self) -> dict:
        return {**super().get_params(), "person": self.person, "identity": self.identity,
                "calibration": self.calibration,
                "cv": self.cv, "ensemble": self.ensemble, "test_mirror": self.test_mirror,
                "threshold": self.threshold}

    def _repr_params(self) -> str:
        if self.model is None:
            layer = f"identity={self.identity}"
        else:  # what the fit built: the identity layer is skipped for 2 classes
            first = self.model.layers[0]
            used = len(self.model.layers) == len(self.hidden) + 2
            layer = f"identity layer {first.units} {first.activation}" if used else "no identity layer"
        return f"person={self.person!r}, hidden={self.hidden}, {layer}"

    def _state(self):
        return {"label": self.label, "calib": list(self.calib), "folds": len(self.folds_)}

    def _state_arrays(self):
        # the fold networks, Keras weight order: fold{k}_{j} = get_weights()[j]
        return {f"fold{k}_{j}": w for k, net in enumerate(self.folds_) for j, w in enumerate(net.get_weights())}

    def _set_state(self, state, arrays):
        self.label = int(state["label"])
        self.calib = tuple(float(v) for v in state["calib"])
        layers = [(layer.units, layer.activation) for layer in self.model.layers]
        self.folds_ = [
            _rebuild(layers, self.model.input_dim, [arrays[f"fold{k}_{j}"] for j in range(2 * len(layers))])
            for k in range(int(state.get("folds", 0)))  # files written before the ensemble have none
        ]

    def _resolve(self, target, names):
        if isinstance(self.person, str):
            if names is None or self.person not in list(names):
                raise ValueError(f"PersonClassifier.fit: person {self.person!r} is not among the names "
                                 f"{list(names)[:10] if names is not None else None}; pass names=... "
                                 "or an integer id")
            return list(names).index(self.person)
        present = np.unique(target)
        if self.person not in present:
            raise ValueError(f"PersonClassifier.fit: person {self.person} is not in the data; the target "
                             f"holds ids {present.min()}..{present.max()} ({len(present)} people). "
                             "Choose one of those")
        return self.person

    def fit(self, images, target, names=None):
        """Train on photos (N, H, W) and person ids (N,); returns self."""
        x, t = self._fit_inputs(images, target)
        self.label = int(self._resolve(t, names))
        y = (t == self.label).astype(np.int64)
        if y.sum() < 2 or (1 - y).sum() < 2:
            raise ValueError(f"PersonClassifier.fit: need at least 2 photos of person {self.person} and 2 of "
                             f"others; got {int(y.sum())} and {int((1 - y).sum())}")
        n_classes = len(np.unique(t))
        self.names = list(names) if names is not None else [str(i) for i in range(int(t.max()) + 1)]
        self._fit_frontend(x)
        F, ta = self._training_features(x, t)  # every training copy once; the folds take rows of it
        photo = np.tile(np.arange(len(y)), len(ta) // len(y))  # the photo each copy comes from
        use_identity = bool(self.identity) and n_classes >= 3
        weights = {0: len(y) / (2.0 * (1 - y).sum()), 1: len(y) / (2.0 * y.sum())}
        folds = _stratified_folds(y, min(self.cv, int(y.sum())), self.seed) if self.calibration is not None else []

        def train(rows, seed_offset):
            desc = f"fold {seed_offset}/{len(folds)}" if seed_offset else "final"
            return self._train_net(F[rows], ta[rows], weights, seed_offset, desc, use_identity)

        if self.calibration is not None:
            z = np.empty(len(y))
            nets = []
            for k, test in enumerate(folds):
                net = train(np.nonzero(~np.isin(photo, test))[0], k + 1)
                z[test] = self._score(x[test], [net])
                nets.append(net)
            self.folds_ = nets if self.ensemble else []
            if self.calibration == "platt":
                # hard 0/1 targets: Platt's smoothed targets would cap P(person) at 6/7 with 5 photos
                self.calib = platt_fit(z, y, smooth=False, ridge=1e-3)
                if self.calib[0] <= 0:
                    rate = float(y.mean())
                    warnings.warn(
                        f"PersonClassifier.fit: the held-out scores do not rank person {self.person} above the "
                        f"others (calibration slope {self.calib[0]:.3g}); predict_proba falls back to the base "
                        f"rate {rate:.3f}. Train longer (epochs) or give more photos of the person",
                        stacklevel=2,
                    )
                    self.calib = (0.0, float(np.log(rate / (1 - rate))))
            else:
                a, _ = platt_fit(z, y)  # temperature: slope only, through the origin
                self.calib = (_temperature(z, y), 0.0) if a > 0 else (a, 0.0)
        self.model = train(np.arange(len(ta)), 0)
        self.n_classes_ = n_classes
        return self

    def _train_net(self, F, ids, weights, seed_offset, desc, use_identity):
        """One network on front-end features F (R, D) of training copies of person ids (R,):
        [the identity layer, trained as a softmax over the people in `ids`, then frozen] +
        the hidden layers and the sigmoid unit, trained on P(person)."""
        y = (ids == self.label).astype(np.int64)
        if not use_identity:
            return self._train(None, None, 1, "sigmoid", features=(F, y), class_weight=weights,
                               seed_offset=seed_offset, desc=desc)
        people, k = np.unique(ids, return_inverse=True)
        ident = self._train(None, None, len(people), "softmax", features=(F, k), hidden=(self.identity,),
                            activation=IDENTITY_ACTIVATION, seed_offset=seed_offset,
                            desc=f"{desc}, identity layer")
        H = ident.forward_all(F)[-2]
        head = self._train(None, None, 1, "sigmoid", features=(H, y), class_weight=weights, seed_offset=seed_offset,
                           desc=f"{desc}, person layers")
        layers = [(self.identity, IDENTITY_ACTIVATION)] + [(layer.units, layer.activation) for layer in head.layers]
        return _rebuild(layers, F.shape[1], ident.get_weights()[:2] + head.get_weights())

    def _score(self, x, nets):
        """Mean output logit (N,) of `nets` on photos x (N, H, W) float (and their mirror images)."""
        views = [x, x[:, :, ::-1]] if self.test_mirror else [x]
        feats = [self.frontend.transform(v) for v in views]
        return np.mean([self._logits(f, net)[:, 0] for f in feats for net in nets], axis=0)

    def decision_function(self, images):
        """Raw score z (N,) of the output unit before the sigmoid (higher = more like the person)."""
        self._need_fit("decision_function")
        return self._score(self._images(images, "decision_function", single=True), [self.model] + list(self.folds_))

    def predict_proba(self, images):
        """Calibrated P(photo shows the person), (N,)."""
        a, b = self.calib
        return sigmoid(a * self.decision_function(images) + b)

    def predict(self, images, threshold=None):
        """1 where predict_proba >= threshold (default: the stored threshold, 0.5), else 0; (N,)."""
        t = self.threshold if threshold is None else _threshold(threshold)
        return (self.predict_proba(images) >= t).astype(np.int64)


def _threshold(t):
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a number in [0, 1]; got {t!r}") from None
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (rule: p >= threshold); got {t}")
    return t


def _stratified_folds(y, k, seed):
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(k)]
    for cls in np.unique(y):
        idx = rng.permutation(np.nonzero(y == cls)[0])
        for i, j in enumerate(idx):
            folds[i % k].append(j)
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]


def _temperature(z, y):
    """T > 0 minimising the log-loss of sigmoid(z / T) (golden-section search on log T)."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)

    def nll(logt):
        s = z / np.exp(logt)
        return float(np.mean(np.logaddexp(0, s) - y * s))

    lo, hi = -5.0, 5.0
    g = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp(-(lo + hi) / 2))
