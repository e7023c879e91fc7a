"""`fastface train`, `fastface predict`, `fastface verify`: the face tasks from the command line.

    fastface train --dataset olivetti|yale|lfw-subset|digits|FOLDER --task person=ID|identify|verify
                   [--hidden 25,15] [--epochs N] [--data DIR] [--seed S] --out MODEL
    fastface predict MODEL IMAGE...          # P(person) or the top-3 people per photo
    fastface verify MODEL IMAGE REFERENCE    # same person? score and calibrated probability

train holds out photos (person / identify: a stratified fraction of each person's photos;
verify: a fraction of the people, never seen in training) and prints the held-out figures:
accuracy, ROC AUC, EER and ECE.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["register", "parse_task", "parse_hidden", "split_per_person", "train_task", "read_photo"]


def parse_task(text: str):
    """'person=ID' -> ('person', ID as int or str); 'identify' / 'verify' -> (name, None)."""
    if text in ("identify", "verify"):
        return text, None
    if text.startswith("person="):
        who = text[len("person="):].strip()
        if not who:
            raise ValueError("--task person=ID needs an id or name after '=', e.g. person=7")
        return "person", int(who) if who.lstrip("-").isdigit() else who
    raise ValueError(f"--task must be person=ID, identify or verify; got {text!r}")


def parse_hidden(text):
    """'25,15' -> (25, 15)."""
    if text is None:
        return None
    try:
        sizes = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated layer sizes such as 25,15; got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--hidden must be one or more sizes >= 1 such as 25,15; got {text!r}")
    return sizes


def split_per_person(target, test_fraction, seed):
    """(train_idx, test_idx): a seeded per-person permutation, round(fraction * n) (>= 1) to test
    for each person with >= 2 photos (people with one photo stay in training)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for p in np.unique(target):
        idx = rng.permutation(np.nonzero(target == p)[0])
        k = max(1, int(round(test_fraction * len(idx)))) if len(idx) >= 2 else 0
        test += list(idx[:k])
        train += list(idx[k:])
    return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(test, np.int64))


def _resolve_person(who, ds):
    if isinstance(who, str):
        if who not in ds.names:
            raise ValueError(f"person {who!r} is not in the data; known: {ds.names[:10]}"
                             f"{' ...' if len(ds.names) > 10 else ''}")
        return ds.names.index(who)
    if who not in set(ds.target.tolist()):
        raise ValueError(f"person {who} is not in the data; ids run 0..{int(ds.target.max())}")
    return who


def train_task(ds, task, who=None, *, hidden=None, epochs=None, seed=0, test_fraction=0.3, verbose=1, log=print):
    """Train a face model for `task` on FaceDataset `ds`; returns (model, held-out figures dict)."""
    from .. import faces
    from ..faces import metrics
    from ..faces.verify import all_pairs

    opts = {"seed": seed, "verbose": verbose}
    if hidden is not None:
        opts["hidden"] = hidden
    if epochs is not None:
        opts["epochs"] = epochs
    x, t = ds.images, ds.target
    if task == "verify":
        people = np.unique(t)
        if len(people) < 4:
            raise ValueError(f"--task verify needs photos of at least 4 people (2 to train, 2 to test); got {len(people)}")
        rng = np.random.default_rng(seed)
        held = rng.choice(people, max(2, int(round(test_fraction * len(people)))), replace=False)
        out = np.isin(t, held)
        log(f"training the embedding on {len(people) - len(held)} people ({int((~out).sum())} photos); "
            f"testing on {len(held)} unseen people")
        model = faces.Verifier(**opts).fit(x[~out], t[~out], names=None)
        E = model.embed(x[out])
        i, j, same = all_pairs(t[out])
        s = np.sum(E[i] * E[j], axis=1)
        p = model.probability(s)
        figures = {"pairs": len(s), "accuracy": float(np.mean((s >= model.threshold) == (same == 1))),
                   "auc": metrics.roc_auc(same, s), "eer": metrics.eer(same, s), "ece": metrics.ece(same, p)}
        return model, figures
    tr, te = split_per_person(t, test_fraction, seed)
    log(f"{len(tr)} training photos, {len(te)} held-out photos, {len(ds.names)} classes")
    if task == "person":
        label = _resolve_person(who, ds)
        model = faces.PersonClassifier(label, **opts).fit(x[tr], t[tr], names=ds.names)
        y = (t[te] == label).astype(np.int64)
        p = model.predict_proba(x[te])
        figures = {"person": ds.names[label], "accuracy": float(np.mean((p >= model.threshold) == (y == 1))),
                   "auc": metrics.roc_auc(y, p) if 0 < y.sum() < len(y) else float("nan"),
                   "eer": metrics.eer(y, p) if 0 < y.sum() < len(y) else float("nan"), "ece": metrics.ece(y, p)}
        return model, figures
    # identify: a validation part of the training photos tunes the temperature and "unknown"
    sub_tr, val = split_per_person(t[tr], 0.2, seed + 1)
    model = faces.Identifier(**opts).fit(x[tr][sub_tr], t[tr][sub_tr], names=ds.names,
                                         validation=(x[tr][val], t[tr][val]) if len(val) else None)
    if len(val):
        model.tune_unknown(x[tr][val], t[tr][val], frr=0.05)
    P = model.predict_proba(x[te])
    top = P.argmax(axis=1)
    ids3, _ = model.top_k(x[te], k=min(3, P.shape[1]))
    correct = (top == t[te]).astype(np.int64)
    figures = {"accuracy": float(correct.mean()), "top3": float(np.mean(np.any(ids3 == t[te][:, None], axis=1))),
               "ece": metrics.ece(t[te], P),
               "auc": metrics.roc_auc(correct, P.max(axis=1)) if 0 < correct.sum() < len(correct) else float("nan"),
               "unknown_threshold": model.unknown_threshold}
    return model, figures


def _fmt(figures):
    parts = []
    for k, v in figures.items():
        if isinstance(v, float):
            parts.append(f"{k}: {v:.4f}")
        elif v is not None:
            parts.append(f"{k}: {v}")
    return ", ".join(parts)


def _train(args) -> int:
    from ..faces import load_dataset

    task, who = parse_task(args.task)
    hidden = parse_hidden(args.hidden)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1; got {args.epochs}")
    if not 0.05 <= args.test_fraction <= 0.9:
        raise ValueError(f"--test-fraction must lie in [0.05, 0.9]; got {args.test_fraction}")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out: folder {folder} does not exist; create it first")
    ds = load_dataset(args.dataset, args.data)
    n, h, w = ds.images.shape
    print(f"dataset {args.dataset}: {n} photos {h}x{w}, {len(ds.names)} classes")
    model, figures = train_task(ds, task, who, hidden=hidden, epochs=args.epochs, seed=args.seed,
                                test_fraction=args.test_fraction, verbose=0 if args.quiet else 1)
    model.save(args.out)
    print(f"held-out results ({task}): {_fmt(figures)}")
    print(f"saved {type(model).__name__} to {args.out}")
    return 0


def read_photo(path, shape):
    """A photo file as uint8 (H, W) resized to `shape` (Pillow), or a .npy array as stored."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} not found")
    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected one photo (H, W); got an array of shape {arr.shape}")
        return arr
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ValueError('reading image files needs Pillow: pip install "fastface[data]" (or pass a .npy)') from None
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
            if shape is not None and grey.size != (shape[1], shape[0]):
                grey = grey.resize((shape[1], shape[0]), Image.BILINEAR)
            return np.asarray(grey, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not an image Pillow can read ({exc}); give a PNG/JPEG or a .npy") from None


def _load_model(path):
    from ..faces import load

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} not found; train one with `fastface train ... --out {path}`")
    return load(path)


def _predict(args) -> int:
    model = _load_model(args.model)
    photos = [read_photo(p, model.shape) for p in args.images]
    kind = model.kind
    if kind == "verify":
        raise ValueError(f"{args.model} is a Verifier; compare two photos with `fastface verify MODEL IMAGE REFERENCE`")
    for path, photo in zip(args.images, photos):
        if kind == "person":
            p = float(model.predict_proba(photo)[0])
            verdict = "yes" if p >= model.threshold else "no"
            print(f"{path}: P({model.names[model.label]}) = {p:.3f} -> {verdict}")
        else:
            ids, probs = model.top_k(photo, k=min(args.top, len(model.names)))
            best = int(model.predict(photo)[0])
            answer = model.names[best] if best >= 0 else "unknown"
            ranked = ", ".join(f"{model.names[i]} {p:.3f}" for i, p in zip(ids[0], probs[0]))
            print(f"{path}: {answer}  (top {len(ids[0])}: {ranked})")
    return 0


def _verify(args) -> int:
    model = _load_model(args.model)
    if model.kind != "verify":
        raise ValueError(f"{args.model} is a {type(model).__name__}, not a Verifier; train one with --task verify")
    image = read_photo(args.image, model.shape if args.resize else None)
    reference = read_photo(args.reference, model.shape if args.resize else None)
    if image.shape != reference.shape:
        raise ValueError(f"the photo is {image.shape} but the reference is {reference.shape}; give photos of "
                         "the same size (or --resize)")
    v = model.verify(image, reference)
    print(f"{'same person' if v.same else 'different people'}: score {v.score:.3f} "
          f"(threshold {model.threshold:.3f}), P(same) = {v.probability:.3f}")
    return 0


def register(subparsers) -> None:
    from ..faces import DATASETS

    p = subparsers.add_parser("train", help="train a face model (person / identify / verify) and report held-out results",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}, or a folder with one sub-folder per person")
    p.add_argument("--task", required=True, help="person=ID (id or name), identify, or verify")
    p.add_argument("--hidden", default=None, help="hidden layer sizes, e.g. 25,15 (default: the task's)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the task's)")
    p.add_argument("--data", default=None, help="folder (or file) holding olivetti_faces.npz / yale_faces.npz "
                                                "(default: $FASTFACE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out share (photos, or people for verify)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="where to write the model (.npz)")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("predict", help="P(person) or the most likely people for photos")
    p.add_argument("model", help="a model written by `fastface train`")
    p.add_argument("images", nargs="+", help="photos (any format Pillow reads; resized to the model's size) or .npy")
    p.add_argument("--top", type=int, default=3, help="how many people to list (identify models)")
    p.set_defaults(func=_predict)

    p = subparsers.add_parser("verify", help="is IMAGE the same person as REFERENCE?")
    p.add_argument("model", help="a Verifier written by `fastface train --task verify`")
    p.add_argument("image")
    p.add_argument("reference")
    p.add_argument("--resize", action="store_true", help="resize both photos to the model's size first")
    p.set_defaults(func=_verify)
