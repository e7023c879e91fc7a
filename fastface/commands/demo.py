"""`fastface demo [--out DIR] [--data DIR]`: train small face models offline and draw what they learned.

1. LFW subset (scikit-image): face vs non-face, the course's 625-25-15-1 sigmoid network.
2. digits (scikit-learn): 10-way softmax on 8x8 images.
3. Olivetti, when olivetti_faces.npz is found (--data or $FASTFACE_DATA): 40-way identification.

Prints what it trained and how well it did on held-out data, then writes PNGs (layer-1 and
layer-2 unit images, saliency of one photo per hidden layer) under DIR (default ./fastface-demo).
"""

from __future__ import annotations

import os
import time

import numpy as np

__all__ = ["register", "run_demo"]


def _pictures(model, photo, out_dir, log):
    """Unit images and saliency of the network of a face model trained without whitening."""
    try:
        from ..explain.demo import demo_pictures
    except ImportError as exc:
        log(f"  (pictures skipped: fastface.explain is not available: {exc})")
        return []
    x = model.frontend.transform(model._images(photo, "demo", single=True))[0]
    try:
        return demo_pictures(model.model, x, model.shape, out_dir)
    except ImportError as exc:
        log(f'  (pictures skipped: {exc}; install the plotting extra: pip install "fastface[data]")')
        return []


def run_demo(out_dir="fastface-demo", data=None, seed=0, log=print):
    from .. import faces
    from ..faces import metrics
    from .faces import split_per_person

    t_start = time.perf_counter()
    results = {}
    # 1. faces vs non-faces: the course's sigmoid network on raw 0..1 pixels (brightness and
    #    contrast are evidence here, so no per-image normalisation), shifted/mirrored copies
    lfw = faces.load_lfw_subset()
    tr, te = split_per_person(lfw.target, 0.3, seed)
    clf = faces.PersonClassifier("face", hidden=(25, 15), normalize=False, whiten=0, shifts=2, weight_decay=1e-3,
                                 epochs=30, seed=seed)
    clf.fit(lfw.images[tr], lfw.target[tr], names=lfw.names)
    p = clf.predict_proba(lfw.images[te])
    y = lfw.target[te]
    results["lfw"] = {"accuracy": float(np.mean((p >= 0.5) == (y == 1))), "auc": metrics.roc_auc(y, p),
                      "ece": metrics.ece(y, p)}
    log(f"[1] LFW subset, face vs non-face: 625-25-15-1 sigmoid network, {len(tr)} training / {len(te)} held-out "
        f"photos -> accuracy {results['lfw']['accuracy']:.3f}, ROC AUC {results['lfw']['auc']:.3f}, "
        f"ECE {results['lfw']['ece']:.3f}")
    # 2. digits: 10-way softmax
    dig = faces.load_digits()
    tr, te = split_per_person(dig.target, 0.3, seed)
    ident = faces.Identifier(hidden=(32,), whiten=0, shifts=0, mirror=False, epochs=40, seed=seed)
    ident.fit(dig.images[tr], dig.target[tr], names=dig.names)
    acc = float(np.mean(ident.predict(dig.images[te]) == dig.target[te]))
    results["digits"] = {"accuracy": acc}
    log(f"[2] digits, 10-way: 64-32-10 softmax network, {len(tr)} / {len(te)} photos -> accuracy {acc:.3f}")
    # 3. Olivetti when its file is found
    try:
        oli = faces.load_olivetti(data)
    except FileNotFoundError:
        log("[3] Olivetti skipped: olivetti_faces.npz not found (pass --data DIR or set $FASTFACE_DATA; "
            "or run sklearn.datasets.fetch_olivetti_faces() once online)")
    else:
        tr, te = split_per_person(oli.target, 0.5, seed)
        oid = faces.Identifier(shifts=1, epochs=40, seed=seed).fit(oli.images[tr], oli.target[tr], names=oli.names)
        acc = float(np.mean(oid.predict(oli.images[te]) == oli.target[te]))
        results["olivetti"] = {"accuracy": acc}
        log(f"[3] Olivetti, 40 people: whitened front end + 100-128-40 network, 5 training / 5 held-out photos "
            f"per person -> top-1 accuracy {acc:.3f}")
    os.makedirs(out_dir, exist_ok=True)
    photo = lfw.images[np.nonzero(lfw.target == 1)[0][0]]
    paths = _pictures(clf, photo, out_dir, log)
    if paths:
        log(f"wrote {len(paths)} pictures of the face/non-face network to {os.path.abspath(out_dir)}:")
        for path in paths:
            log(f"  {path}")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    results["pictures"] = paths
    return results


def _demo(args) -> int:
    from ..faces import MissingExtraError

    try:
        run_demo(args.out, args.data, args.seed)
    except MissingExtraError as exc:
        raise ValueError(str(exc)) from None
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train small face models offline, print how well they do, draw them",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="fastface-demo", help="folder for the PNG pictures (default ./fastface-demo)")
    p.add_argument("--data", default=None, help="folder holding olivetti_faces.npz (default: $FASTFACE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
