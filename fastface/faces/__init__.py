"""Face tasks: "probability of being person XYZ", identification, comparison with a reference.

    from fastface import faces
    images, target, names = faces.load_olivetti()          # uint8 (400, 64, 64), (400,), 40 names
    clf = faces.PersonClassifier(person=7).fit(images, target)
    clf.predict_proba(images[:3])                            # calibrated P(person 7)
    ident = faces.Identifier().fit(images, target); ident.top_k(images[:1], k=3)
    ver = faces.Verifier().fit(images, target); ver.verify(photo, reference)

Submodules: datasets (loaders), metrics (ROC, AUC, EER, ECE), preprocess (checks,
normalisation, augmentation, whitening), person / identify / verify (the three models).
"""

from __future__ import annotations

import importlib

from . import metrics
from .datasets import (
    DATASETS,
    FaceDataset,
    MissingExtraError,
    load_dataset,
    load_digits,
    load_image_folder,
    load_lfw_subset,
    load_olivetti,
    load_yale,
)

__all__ = [
    "metrics",
    "FaceDataset",
    "MissingExtraError",
    "DATASETS",
    "load_dataset",
    "load_olivetti",
    "load_yale",
    "load_lfw_subset",
    "load_digits",
    "load_image_folder",
    "PersonClassifier",
    "Identifier",
    "Verifier",
    "wccn_matrix",
    "load",
]

_LAZY = {"PersonClassifier": "person", "Identifier": "identify", "Verifier": "verify", "wccn_matrix": "verify",
         "load": "_base"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastface.faces' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
