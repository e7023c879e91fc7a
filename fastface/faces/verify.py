"""Verifier: is this the same person as in the reference photo? (works for unseen people)

Shapes: images (N, H, W) uint8 0..255 or float 0..1; embed -> (N, E) unit rows (E = last
hidden size H, whitening components D, or H + D for embedding='both'); the within-class
normalisation T (E, E);
similarity(images_a (N, H, W), images_b (N, H, W) or (1, H, W)) -> (N,) cosine
scores in [-1, 1]; verify(image (H, W), reference (H, W)) -> Verdict(same, score, probability).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from . import metrics
from ._base import FaceModel, platt_fit, sigmoid
from .preprocess import check_target

__all__ = ["Verifier", "Verdict", "all_pairs", "EMBEDDINGS", "wccn_matrix"]

# embedding name -> what is compared (both centred and L2-normalised)
EMBEDDINGS = {
    "hidden": "the last hidden layer of the network (trained to tell the training people apart)",
    "frontend": "the whitened front-end features (PCA of the training photos; generalises across datasets)",
    "both": "the last hidden layer and the whitened front-end features side by side (the default)",
}

# weight of the whitened features (unit variance each) against the tanh hidden units in 'both'
FRONTEND_WEIGHT = 0.35


def _unit_rows(h):
    return h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-12)


def wccn_matrix(E, target, shrink):
    """Within-class covariance normalisation: T (E, E) = (S_w / mean var + shrink * I)^(-1/2).

    E (N, E) embeddings of labelled photos, target (N,) their people. S_w is the covariance of
    each embedding around its person's mean: the directions in which photos of one person
    differ (pose, expression, lighting). E @ T shrinks those directions and keeps the others,
    so a cosine of E @ T rows weighs what tells people apart. S_w is scaled to unit mean
    variance first, so `shrink` (> 0) is relative: large values approach the identity.
    Returns None when the photos show no within-person variation (one photo per person).
    """
    E = np.asarray(E, np.float64)
    D = E.copy()
    for p in np.unique(target):
        rows = target == p
        D[rows] -= E[rows].mean(axis=0)
    S = D.T @ D / len(D)
    scale = np.trace(S) / len(S)
    if not scale > 1e-12:
        return None
    w, V = np.linalg.eigh(S / scale + shrink * np.eye(len(S)))
    return ((V / np.sqrt(w)) @ V.T).astype(np.float32)


class Verdict(NamedTuple):
    same: bool
    score: float
    probability: float


def all_pairs(target):
    """Indices (i, j), i < j, of every pair of photos and same (0/1) for each; target (N,)."""
    t = np.asarray(target)
    i, j = np.triu_indices(len(t), 1)
    return i, j, (t[i] == t[j]).astype(np.int64)


class Verifier(FaceModel):
    """Face comparison by an embedding: the L2-normalised, centred last hidden layer of a
    network trained to tell the training people apart (softmax over them, with shifted and
    mirrored copies and weight decay on a whitened, normalised front end). Photos of one
    person land close together, of different people far apart, also for people the network
    never saw, because the layer encodes general face differences, not the training names.

    embedding='frontend' compares the whitened front-end features instead (the network is
    still trained and saved): less separating within one dataset, more robust across
    datasets and lighting (use it with illumination=True and :meth:`adapt`).
    embedding='both' (the default) compares the two side by side, the whitened features
    weighted by FRONTEND_WEIGHT: as separating as the hidden layer on unseen people of the
    training dataset and better after :meth:`adapt` and across datasets. For photos from
    another camera or lighting (e.g. trained on Olivetti, compared on Yale) the best setting
    is Verifier(illumination=True, embedding="frontend") followed by adapt(photos).

    wccn (default 0.5; None turns it off): within-class covariance normalisation of the
    embedding (:func:`wccn_matrix`), estimated on the augmented training photos: the
    directions in which one person's photos vary are shrunk before the cosine. Measured on
    Olivetti's unseen people 30-39 (benches/faces_protocols.py, seeds 0-4): EER 0.089 without,
    0.079 with 0.5 (0.080 with 1.0); across datasets (Olivetti -> Yale) it helps as much.

    Decision: same when the cosine score >= threshold. `fit` tunes the threshold (equal
    error rate, or the target false-accept rate `far`) and a Platt calibration of the score
    into P(same) on all pairs of held-out people: a fraction `tune_fraction` of the people is
    kept out of training for that, then (refit=True) the network is trained again on everyone
    with the same settings. :meth:`tune_threshold` redoes it on any labelled photos.
    """

    kind = "verify"

    def __init__(self, hidden=(64,), *, activation="tanh", embedding="both", wccn=0.5, far=None, tune_fraction=0.2,
                 refit=True,
                 normalize=True, whiten=100, whiten_reg=0.0, illumination=False, shifts=1, mirror=True, epochs=80,
                 batch_size=64,
                 learning_rate=1e-3, weight_decay=1e-3, seed=0, verbose=0):
        super().__init__(hidden=hidden, activation=activation, normalize=normalize, whiten=whiten,
                         whiten_reg=whiten_reg, illumination=illumination,
                         shifts=shifts, mirror=mirror, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, weight_decay=weight_decay, seed=seed, verbose=verbose)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"Verifier: embedding must be one of {list(EMBEDDINGS)}; got {embedding!r}")
        self.embedding = embedding
        if wccn is not None and not (isinstance(wccn, numbers.Real) and not isinstance(wccn, bool) and wccn > 0):
            raise ValueError(f"Verifier: wccn must be a shrinkage > 0 (e.g. 0.5) or None for no within-class "
                             f"normalisation; got {wccn!r}")
        self.wccn = None if wccn is None else float(wccn)
        if not 0.0 <= float(tune_fraction) < 1.0:
            raise ValueError(f"Verifier: tune_fraction must lie in [0, 1); got {tune_fraction!r}")
        self.far = None if far is None else float(far)
        self.tune_fraction = float(tune_fraction)
        self.refit = bool(refit)
        self.threshold = 0.5
        self.calib = (10.0, -5.0)
        self.center = None
        self.wccn_transform = None  # T (E, E) of the within-class normalisation, or None
        self.tuning = {}

    def get_params(self) -> dict:
        return {**super().get_params(), "embedding": self.embedding, "wccn": self.wccn, "far": self.far,
                "tune_fraction": self.tune_fraction, "refit": self.refit}

    def _state(self):
        return {"threshold": self.threshold, "calib": list(self.calib), "tuning": self.tuning}

    def _state_arrays(self):
        arrays = {"center": self.center}
        if self.wccn_transform is not None:
            arrays["wccn"] = self.wccn_transform
        return arrays

    def _set_state(self, state, arrays):
        self.threshold = float(state["threshold"])
        self.calib = tuple(float(v) for v in state["calib"])
        self.tuning = dict(state.get("tuning", {}))
        self.center = arrays["center"]
        self.wccn_transform = arrays.get("wccn")

    def _train_embedding(self, x, t):
        ids, t = np.unique(t, return_inverse=True)
        self._fit_frontend(x)
        F, ta = self._training_features(x, t)
        self.model = self._train(x, t, len(ids), "softmax", features=(F, ta))
        raw = self._raw_embedding(F)
        self.center = raw[: len(x)].mean(axis=0).astype(np.float32)  # the originals come first
        self.wccn_transform = None
        if self.wccn is not None:  # on the copies the network was trained on
            self.wccn_transform = wccn_matrix(_unit_rows(raw - self.center), ta, self.wccn)

    def _raw_embedding(self, F):
        """Embedding before centring: F (N, D) front-end features -> (N, E) float64."""
        if self.embedding == "frontend":
            return np.asarray(F, np.float64)
        h = self.model.forward_all(F)[-2].astype(np.float64)
        if self.embedding == "both":
            return np.concatenate([h, FRONTEND_WEIGHT * np.asarray(F, np.float64)], axis=1)
        return h

    def fit(self, images, target, names=None):
        """Train the embedding on photos (N, H, W) of labelled people (N,), tune the threshold."""
        x, t = self._fit_inputs(images, target)
        people = np.unique(t)
        if len(people) < 2:
            raise ValueError(f"Verifier.fit: need photos of at least two people; got {len(people)}")
        self.names = list(names) if names is not None else [str(p) for p in people]
        n_out = int(round(self.tune_fraction * len(people)))
        if self.tune_fraction > 0 and n_out >= 2 and len(people) - n_out >= 2:
            rng = np.random.default_rng(self.seed)
            held = rng.choice(people, n_out, replace=False)
            out = np.isin(t, held)
            self._train_embedding(x[~out], t[~out])
            self.tune_threshold(x[out], t[out], far=self.far)
            self.tuning["people"] = int(n_out)
            if self.refit:
                self._train_embedding(x, t)
        else:
            self._train_embedding(x, t)
            self.tune_threshold(x, t, far=self.far)
            self.tuning["people"] = 0
            self.tuning["note"] = "tuned on the training photos (optimistic); call tune_threshold on held-out people"
        return self

    def adapt(self, images):
        """Re-centre the embedding on unlabelled photos (N, H, W) of the population to be
        compared (another camera, lighting or dataset); labels are not needed. Returns self.

        The centre subtracted before normalising is the mean hidden activation of the
        training photos; photos from elsewhere share an offset (lighting, framing) that
        makes every pair look alike, and removing their own mean removes it.
        """
        self._need_fit("adapt")
        F = self._features(images, "adapt")
        if F.shape[0] < 2:
            raise ValueError("Verifier.adapt: need at least 2 photos to estimate a centre")
        self.center = self._raw_embedding(F).mean(axis=0).astype(np.float32)
        return self

    def embed(self, images):
        """Unit-length embeddings (N, E) of photos (N, H, W) (or one photo (H, W))."""
        h = _unit_rows(self._raw_embedding(self._features(images, "embed", single=True)) - self.center)
        return h if self.wccn_transform is None else _unit_rows(h @ self.wccn_transform)

    def similarity(self, images_a, images_b):
        """Cosine score per aligned pair (N,): images_a (N, H, W) vs images_b (N, H, W) or one
        reference (H, W) / (1, H, W) compared with every photo of images_a."""
        a = self.embed(images_a)
        b = self.embed(images_b)
        if b.shape[0] not in (1, a.shape[0]):
            raise ValueError(f"Verifier.similarity: images_a has {a.shape[0]} photos and images_b "
                             f"{b.shape[0]}; pass aligned pairs (same N) or one reference photo")
        return np.sum(a * b, axis=1)

    def probability(self, score):
        """Calibrated P(same person) for cosine scores (array or float)."""
        a, b = self.calib
        return sigmoid(a * np.asarray(score, np.float64) + b)

    def verify(self, image, reference):
        """Compare one photo (H, W) with a reference photo of the same size -> Verdict."""
        self._need_fit("verify")
        for name, im in (("image", image), ("reference", reference)):
            arr = np.asarray(im) if not isinstance(im, (list, tuple)) else None
            if arr is not None and arr.ndim == 3 and arr.shape[0] != 1:
                raise ValueError(f"Verifier.verify: {name} must be one photo (H, W); got {arr.shape[0]} "
                                 "photos. Use similarity(images_a, images_b) for many pairs")
        score = float(self.similarity(image, reference)[0])
        return Verdict(bool(score >= self.threshold), score, float(self.probability(score)))

    def tune_threshold(self, images, target, *, far=None):
        """Threshold and calibration from all pairs of labelled photos (N, H, W), (N,).

        far=None: the threshold at the equal error rate; a number: the lowest threshold whose
        false-accept rate is <= far. Also fits P(same) = sigmoid(a * score + b) (Platt) on the
        pairs. Stored with the model; returns a dict of the figures.
        """
        E = self.embed(images)
        t = check_target(target, E.shape[0], "Verifier.tune_threshold")
        i, j, same = all_pairs(t)
        if same.min() == same.max():
            raise ValueError("Verifier.tune_threshold: need pairs of the same person and of different people "
                             "(at least two photos of one person and two people)")
        s = np.sum(E[i] * E[j], axis=1)
        e, thr = metrics.eer(same, s, return_threshold=True)
        if far is not None:
            thr = metrics.threshold_at_far(same, s, far)
        self.threshold = float(thr)
        self.calib = platt_fit(s, same)
        f, r = metrics.far_frr(same, s, self.threshold)
        self.tuning = {"pairs": int(len(s)), "eer": e, "far": f, "frr": r, "auc": metrics.roc_auc(same, s)}
        return dict(self.tuning, threshold=self.threshold)
