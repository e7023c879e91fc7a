"""The README's pictures: what the hidden units of an Olivetti face identifier look for, and
which pixels move them. Regenerate with

    python -m fastface.explain.figures --out benches/figures [--data FOLDER] [--epochs 30]

Dimensions: 400 photos (N, 64, 64), IN = 4096 pixels in 0..1; network 4096-64-32-40
(sigmoid, sigmoid, softmax over the 40 people), inputs standardised by the model.
Train on 8 photos per person, explain a held-out photo. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from .attribution import integrated_gradients, occlusion
from .gradients import layer_activations, most_sensitive_units, saliency, smoothgrad
from .plots import save_grid
from .units import maximize_unit, unit_images

__all__ = ["main", "make_figures", "train_identifier"]

SHAPE = (64, 64)


def _olivetti(data):
    candidates = [data, os.environ.get("FASTFACE_DATA"), Path.cwd().parent / "shared" / "data",
                  Path(__file__).resolve().parents[3] / "shared" / "data"]
    for c in candidates:
        if not c:
            continue
        p = Path(c)
        p = p / "olivetti_faces.npz" if p.is_dir() else p
        if p.is_file():
            with np.load(p, allow_pickle=False) as f:
                return f["images"], f["target"]
    raise FileNotFoundError(
        "olivetti_faces.npz not found: pass --data FOLDER (or the file) or set $FASTFACE_DATA"
    )


def train_identifier(images, target, epochs=30, seed=0):
    """4096-64-32-40 sigmoid/sigmoid/softmax, standardised inputs, Adam; (model, test indices)."""
    from ..model import Dense, Sequential

    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    test = np.flatnonzero(np.arange(len(X)) % 10 >= 8)
    train = np.setdiff1d(np.arange(len(X)), test)
    model = Sequential([Dense(64, "sigmoid"), Dense(32, "sigmoid"), Dense(40, "softmax")],
                       input_dim=X.shape[1], seed=seed, normalize="standard")
    model.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=3e-3)
    model.fit(X[train], target[train], epochs=epochs, batch_size=32, verbose=0)
    model.meta["image_shape"] = list(SHAPE)
    return model, X, test


def make_figures(model, X, target, test, out, *, shape=None, steps=150):
    """Write the README's PNGs into `out`; returns {name: path}.

    model a 3-layer identifier, X (N, IN) photos in 0..1, target (N,), test the held-out
    indices; shape (H, W) (default: the model's metadata, else a square); steps of the
    activation maximisation.
    """
    from ._common import image_shape, network

    SHAPE = image_shape(model, network(model, "make_figures").input_dim, shape, "make_figures")
    os.makedirs(out, exist_ok=True)
    paths = {}
    n1 = min(16, model.layers[0].W.shape[1])
    paths["units_layer1"] = save_grid(
        unit_images(model, 1, SHAPE, units=range(n1)), os.path.join(out, "units_layer1.png"),
        titles=[f"unit {j}" for j in range(n1)], shared_scale=False, colorbar=False, ncols=8,
        suptitle="Layer 1: each unit's incoming weights W1[:, j] (red +, blue -)")
    n1 = min(16, model.layers[1].W.shape[1])
    paths["units_layer2"] = save_grid(
        unit_images(model, 2, SHAPE, units=range(n1)), os.path.join(out, "units_layer2.png"),
        titles=[f"unit {j}" for j in range(n1)], shared_scale=False, colorbar=False, ncols=8,
        suptitle="Layer 2: W1 @ W2 columns (the linear view back to the pixels)")
    n2 = min(8, n1)
    maxed = np.stack([maximize_unit(model, 2, j, steps=steps, shape=SHAPE) for j in range(n2)])
    paths["maximize_layer2"] = save_grid(
        maxed, os.path.join(out, "maximize_layer2.png"), titles=[f"unit {j}" for j in range(n2)],
        shared_scale=False, colorbar=False, ncols=8,
        suptitle="Layer 2: the input of fixed norm that excites each unit most (gradient ascent)")

    i = int(test[0])
    x, photo = X[i], X[i].reshape(SHAPE)
    for layer in (1, 2):
        a = layer_activations(model, x, layer)
        top, _ = most_sensitive_units(model, x, layer, 8)
        S = saliency(model, x, layer, unit=top)  # one batched pass for the 8 units
        paths[f"saliency_layer{layer}"] = save_grid(
            S.reshape(len(top), *SHAPE), os.path.join(out, f"saliency_layer{layer}.png"),
            titles=[f"unit {u}: a={a[u]:.3g}" for u in top], overlay=photo, alpha=0.8, ncols=4,
            shared_scale=False,
            suptitle=f"Layer {layer}: d a{layer}[j] / d pixel for this photo (signed; red: brighter raises the unit)")

    p = model.predict(x[None])[0]
    person = int(np.argmax(p))
    maps = [
        saliency(model, x, 3, unit=person),
        smoothgrad(model, x, 3, unit=person, samples=32),
        integrated_gradients(model, x, 3, unit=person),
        occlusion(model, x, 3, unit=person, window=8, stride=4),
    ]
    names = ["saliency", "SmoothGrad", "integrated gradients", "occlusion (8x8)"]
    paths["methods_output"] = save_grid(
        np.stack(maps).reshape(4, *SHAPE), os.path.join(out, "methods_output.png"), titles=names,
        overlay=photo, alpha=0.8, shared_scale=False, ncols=4,
        suptitle=f"Why 'person {person}' (p = {p[person]:.2f}, truth: person {int(target[i])}): four attributions")

    # "Why isn't it 100%?": a held-out photo the model gets right without certainty; integrated
    # gradients of the winning person's probability and of the runner-up's.
    P = model.predict(X[test])
    ok = np.flatnonzero(np.argmax(P, axis=1) == target[test])
    conf = P[ok, target[test][ok]]
    pick = ok[np.argmin(np.abs(conf - 0.6))] if ok.size else 0
    j = int(test[pick])
    xj, pj = X[j], P[pick]
    first, second = (int(k) for k in np.argsort(-pj)[:2])
    ig = [integrated_gradients(model, xj, 3, unit=k, return_gap=True) for k in (first, second)]
    paths["why_not_100"] = save_grid(
        np.stack([xj - X[test].mean(axis=0), ig[0][0], ig[1][0]]).reshape(3, *SHAPE),
        os.path.join(out, "why_not_100.png"),
        titles=["photo - mean photo", f"IG, p(person {first}) = {pj[first]:.2f} (gap {ig[0][1]:.2%})",
                f"IG, p(person {second}) = {pj[second]:.2f} (gap {ig[1][1]:.2%})"],
        overlay=xj.reshape(SHAPE), alpha=0.8, shared_scale=False, ncols=3,
        suptitle=f"A photo of person {int(target[j])}: pixels for (red) / against (blue) each answer")

    # "Is the photo compared with a reference picture?": the output unit's linear template vs
    # the person's mean training photo, and the input that maximises the person's probability.
    people = [int(target[i]) for i in test[:8:2]]
    train = np.setdiff1d(np.arange(len(X)), test)
    rows = []
    for k in people:
        mine = train[target[train] == k]
        rows += [X[mine].mean(axis=0) - X[train].mean(axis=0),
                 unit_images(model, 3, SHAPE, units=[k])[0].ravel(),
                 maximize_unit(model, 3, k, steps=steps).ravel()]
    titles = []
    for k in people:
        titles += [f"person {k}: mean photo", "output template", "max-p input"]
    paths["templates_output"] = save_grid(
        np.stack(rows).reshape(len(rows), *SHAPE), os.path.join(out, "templates_output.png"),
        titles=titles, shared_scale=False, colorbar=False, ncols=6,
        suptitle="Each person: mean photo (minus the mean face), the output unit's linear template, "
                 "the input maximising p")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the README's explanation pictures.")
    parser.add_argument("--out", default="benches/figures", help="folder for the PNGs")
    parser.add_argument("--data", default=None, help="folder holding olivetti_faces.npz (or the file)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--save-model", default=None, help="also save the trained model here (.npz)")
    parser.add_argument("--model", default=None, help="explain this saved model instead of training one")
    args = parser.parse_args(argv)
    images, target = _olivetti(args.data)
    t = time.perf_counter()
    if args.model:
        from ..model import load_model

        model = load_model(args.model)
        X = images.reshape(len(images), -1).astype(np.float32) / 255.0
        test = np.flatnonzero(np.arange(len(X)) % 10 >= 8)
    else:
        model, X, test = train_identifier(images, target, epochs=args.epochs)
        if args.save_model:
            model.save(args.save_model)
    acc = float(np.mean(model.predict_classes(X[test]) == target[test]))
    how = f"loaded {args.model}" if args.model else (
        f"trained 4096-64-32-40 on {len(X) - len(test)} Olivetti photos in {time.perf_counter() - t:.1f} s")
    print(f"{how}; held-out accuracy {acc:.1%} on {len(test)} photos")
    for name, path in make_figures(model, X, target, test, args.out).items():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
