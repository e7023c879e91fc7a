"""Face data loaders: each returns a :class:`FaceDataset` (images (N, H, W), target (N,), names).

    images  uint8 0..255 or float 0..1, shape (N, H, W)
    target  int64 (N,), an index into `names`
    names   list of str, one per class

`images, target, names = load_olivetti()` unpacks; `.condition` (Yale) and `.source` are extra.

Where the files come from:
- Olivetti: `path`, else ``$FASTFACE_DATA/olivetti_faces.npz``, else scikit-learn's download
  cache (``fetch_olivetti_faces(download_if_missing=False)``), else a clear error.
- Yale: `path`, else ``$FASTFACE_DATA/yale_faces.npz``, else a clear error.
- LFW subset (scikit-image) and digits (scikit-learn) ship inside those packages (offline).
- :func:`load_image_folder`: one sub-folder per person, any format Pillow reads.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "FaceDataset",
    "load_olivetti",
    "load_yale",
    "load_lfw_subset",
    "load_digits",
    "load_image_folder",
    "load_dataset",
    "DATASETS",
    "MissingExtraError",
]

EXTRA_HINT = 'pip install "fastface[data]"'


class MissingExtraError(ImportError):
    """An optional dependency (scikit-learn, scikit-image, Pillow) is not installed."""


@dataclass
class FaceDataset:
    """images (N, H, W), target int64 (N,), names list[str]; unpacks as (images, target, names)."""

    images: np.ndarray
    target: np.ndarray
    names: list
    condition: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.images, self.target, self.names))

    def __len__(self):
        return len(self.target)

    def __repr__(self):
        n, h, w = self.images.shape
        return (f"FaceDataset({n} images {h}x{w} {self.images.dtype}, {len(self.names)} classes, "
                f"source={self.source!r})")


def _need(module: str, what: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs the optional package {module.split('.')[0]!r}, which is not installed; "
            f"install it with: {EXTRA_HINT}"
        ) from exc


def _read_npz(path: Path, required=("images", "target")) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz file without pickle ({exc})") from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing}; expected {list(required)}, "
                         f"found {sorted(arrays)}")
    images, target = arrays["images"], arrays["target"]
    if images.ndim != 3 or target.shape != (images.shape[0],):
        raise ValueError(f"{path}: expected images (N, H, W) and target (N,); got "
                         f"{images.shape} and {target.shape}")
    return arrays


def _locate(path, filename: str, what: str) -> Path | None:
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise FileNotFoundError(f"{what}: no file at {p}; pass the path to {filename} "
                                    "or the folder holding it")
        return p
    env = os.environ.get("FASTFACE_DATA")
    if env:
        p = Path(env) / filename
        if p.is_file():
            return p
    return None


def load_olivetti(path=None) -> FaceDataset:
    """The Olivetti / ORL faces: 40 people x 10 photos, uint8 (400, 64, 64)."""
    p = _locate(path, "olivetti_faces.npz", "load_olivetti")
    if p is not None:
        a = _read_npz(p)
        images, target, source = a["images"], a["target"].astype(np.int64), str(p)
    else:
        images = None
        try:
            from sklearn.datasets import fetch_olivetti_faces

            bunch = fetch_olivetti_faces(download_if_missing=False)
            images = np.clip(np.rint(bunch.images * 255.0), 0, 255).astype(np.uint8)
            target, source = bunch.target.astype(np.int64), "scikit-learn cache"
        except (ImportError, OSError):
            pass
        if images is None:
            raise FileNotFoundError(
                "load_olivetti: olivetti_faces.npz not found. Put it in a folder and pass "
                "path=... (CLI: --data FOLDER) or set $FASTFACE_DATA to that folder; or let "
                "scikit-learn download it once with sklearn.datasets.fetch_olivetti_faces()"
            )
    names = [f"person {i}" for i in range(int(target.max()) + 1)]
    return FaceDataset(images, target, names, source=source)


def load_yale(path=None) -> FaceDataset:
    """The Yale faces: 15 people x 10 photos under hard lighting, uint8 (150, 64, 64)."""
    p = _locate(path, "yale_faces.npz", "load_yale")
    if p is None:
        raise FileNotFoundError(
            "load_yale: yale_faces.npz not found. Pass path=... (CLI: --data FOLDER) or set "
            "$FASTFACE_DATA to the folder holding it"
        )
    a = _read_npz(p)
    target = a["target"].astype(np.int64)
    names = [f"subject {i + 1:02d}" for i in range(int(target.max()) + 1)]
    cond = a.get("condition")
    return FaceDataset(a["images"], target, names, condition=cond, source=str(p))


def load_lfw_subset() -> FaceDataset:
    """scikit-image's LFW subset: 100 faces then 100 non-faces, float (200, 25, 25) in 0..1.

    target 1 = face, 0 = non-face; names = ['non-face', 'face'].
    """
    data = _need("skimage.data", "load_lfw_subset")
    images = np.asarray(data.lfw_subset(), dtype=np.float32)
    target = np.zeros(len(images), dtype=np.int64)
    target[:100] = 1
    return FaceDataset(images, target, ["non-face", "face"], source="skimage.data.lfw_subset")


def load_digits() -> FaceDataset:
    """scikit-learn's digits: 1,797 8x8 images scaled to float 0..1 (from 0..16), 10 classes."""
    ds = _need("sklearn.datasets", "load_digits")
    bunch = ds.load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return FaceDataset(images, bunch.target.astype(np.int64), [str(i) for i in range(10)],
                       source="sklearn.datasets.load_digits")


def load_image_folder(root, size=(64, 64), *, verbose=True) -> FaceDataset:
    """A user's photos: `root/<person>/<photo>`, any format Pillow reads, grey, resized to `size`.

    Unreadable files are reported (a warning) and skipped, never fatal. A folder with no
    readable photo, or photos of a single person, is a clear error. Returns uint8 images
    (N, size[0], size[1]); names are the sub-folder names, sorted.
    """
    Image = _need("PIL.Image", "load_image_folder")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"load_image_folder: {root} is not a folder; expected one "
                                "sub-folder per person holding that person's photos")
    try:
        h, w = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"load_image_folder: size must be (height, width); got {size!r}") from None
    if h < 2 or w < 2:
        raise ValueError(f"load_image_folder: size must be at least (2, 2); got {size!r}")
    people = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images, target, names, skipped = [], [], [], []
    for person in people:
        count = 0
        for f in sorted(person.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("L").resize((w, h), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except Exception as exc:  # any unreadable file is reported and skipped
                skipped.append(f"{f} ({type(exc).__name__}: {exc})")
                continue
            images.append(arr)
            target.append(len(names))
            count += 1
        if count:
            names.append(person.name)
    for line in skipped:
        warnings.warn(f"load_image_folder: skipped unreadable file {line}", stacklevel=2)
    if skipped and verbose:
        print(f"load_image_folder: skipped {len(skipped)} unreadable file(s)", file=sys.stderr)
    if not images:
        raise ValueError(f"load_image_folder: no readable photo under {root}; expected "
                         f"{root}/<person name>/<photo>.jpg|png|... (one sub-folder per person)")
    if len(names) < 2:
        raise ValueError(f"load_image_folder: found photos of only one person ({names[0]!r}) "
                         f"under {root}; recognition needs at least two people (two sub-folders)")
    return FaceDataset(np.stack(images), np.asarray(target, dtype=np.int64), names,
                       source=str(root), extra={"skipped": skipped})


DATASETS = {
    "olivetti": load_olivetti,
    "yale": load_yale,
    "lfw-subset": load_lfw_subset,
    "digits": load_digits,
}


def load_dataset(name_or_folder, data=None) -> FaceDataset:
    """A dataset by CLI name ('olivetti', 'yale', 'lfw-subset', 'digits') or a folder of photos.

    `data` is the folder (or file) for the file-based sets (Olivetti, Yale).
    """
    name = str(name_or_folder)
    loader = DATASETS.get(name)
    if loader is not None:
        return loader(data) if name in ("olivetti", "yale") else loader()
    if Path(name).is_dir():
        return load_image_folder(name)
    raise ValueError(f"unknown dataset {name!r}: expected one of {list(DATASETS)} or a folder "
                     "with one sub-folder of photos per person")
