"""Safe files: NumPy arrays + JSON metadata in one ``.npz``, no pickle, written atomically.

Layout of a file written by :func:`save_npz`:

    <name>         every array of ``arrays`` under its own name (numeric dtypes only)
    __fastface__   a uint8 array holding UTF-8 JSON:
                   {"format": str, "format_version": int,
                    "checksum": "sha256:<hex>",      # over names, dtypes, shapes and bytes
                    "meta": {...}}                    # the caller's JSON-serialisable dict

Writing goes to a temporary file in the destination folder, is flushed to disk, then renamed
over the destination with ``os.replace``: a reader sees the old file or the new one, never a
half-written one, and a failed save leaves no partial file behind.

Reading uses ``np.load(..., allow_pickle=False)`` and refuses, with a ValueError saying what is
wrong and what to do, files that are not zip/npz (corrupt, truncated), that lack the metadata
record (foreign), whose format name differs from the one expected, whose format version is
newer than the reader supports, or whose arrays do not match the checksum (tampered).

The model (:mod:`fastface.model`) and the face tasks save themselves through these two
functions, each with its own format name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save_npz", "load_npz", "checksum", "META_KEY"]

META_KEY = "__fastface__"


def checksum(arrays: dict) -> str:
    """sha256 over the arrays in name order: name, dtype, shape and C-order bytes of each."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8") + b"\0")
        h.update(arr.dtype.str.encode("ascii") + b"\0")
        h.update(repr(tuple(int(s) for s in arr.shape)).encode("ascii") + b"\0")
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def _check_arrays(arrays) -> dict:
    if not isinstance(arrays, dict):
        raise TypeError(f"save_npz: arrays must be a dict name -> array; got {type(arrays).__name__}")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == META_KEY or "/" in name:
            raise ValueError(
                f"save_npz: array names must be non-empty strings without '/' and not {META_KEY!r}; "
                f"got {name!r}"
            )
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"save_npz: array {name!r} has dtype {arr.dtype}; only bool, integer and float "
                "arrays are stored (no pickle). Convert strings to a JSON list in meta instead"
            )
        out[name] = arr
    return out


def save_npz(path, arrays: dict, meta: dict, *, format: str | None = None, format_version: int = 1) -> str:
    """Write `arrays` and the JSON-serialisable `meta` to `path` atomically; return the path.

    `format` names the kind of object (e.g. ``"fastface.model"``); when None it is taken from
    ``meta["format"]``. The path is used exactly as given (no extension is added).
    """
    path = os.fspath(path)
    arrays = _check_arrays(arrays)
    if not isinstance(meta, dict):
        raise TypeError(f"save_npz: meta must be a dict; got {type(meta).__name__}")
    fmt = format if format is not None else meta.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise ValueError("save_npz: give the format name (format='...' or meta['format'])")
    header = {
        "format": fmt,
        "format_version": int(format_version),
        "checksum": checksum(arrays),
        "meta": meta,
    }
    try:
        text = json.dumps(header, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"save_npz: meta must be JSON-serialisable (dicts, lists, str, finite numbers, "
            f"bools, None); {exc}. Convert NumPy values with .tolist() or float()"
        ) from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_npz: folder {folder!r} does not exist; create it first")
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_npz(path, expected_format: str, *, max_version: int | None = None):
    """Read a file written by :func:`save_npz` -> (arrays: dict, meta: dict).

    Raises FileNotFoundError when `path` does not exist and ValueError when the file is
    corrupt, truncated, foreign (no fastface metadata, or another format than
    `expected_format`), newer than `max_version`, or tampered (checksum mismatch).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise _Foreign()
        with data:
            names = list(data.files)
            if META_KEY not in names:
                raise _Foreign()
            arrays = {name: data[name] for name in names if name != META_KEY}
            raw = data[META_KEY]
    except _Foreign:
        raise ValueError(
            f"{path!r} is not a fastface file (no {META_KEY!r} metadata record); expected a "
            f"{expected_format!r} file written by fastface's save()"
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as exc:
        with open(path, "rb") as fh:
            archive = fh.read(2) == b"PK"
        # NumPy reads a file that is neither .npz nor .npy as a pickle and refuses that: its
        # message ("pickled (object) data") would mislead for an image or text file
        why = f"{type(exc).__name__}: {exc}" if archive else "not an .npz archive at all"
        raise ValueError(
            f"{path!r} is corrupt or truncated and cannot be read as a fastface "
            f"{expected_format!r} file ({why}); give a file written by save() "
            "(or `fastface train --out`), or save it again"
        ) from None
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("metadata record is not UTF-8 bytes")
        header = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(header, dict) or not isinstance(header.get("meta"), dict):
            raise ValueError("metadata is not a JSON object with a 'meta' entry")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path!r} has corrupt metadata ({exc}); save it again") from None
    fmt = header.get("format")
    if fmt != expected_format:
        raise ValueError(
            f"{path!r} holds a {fmt!r} file, not the expected {expected_format!r}; "
            "load it with the matching loader"
        )
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path!r} has an invalid format version {version!r}; save it again")
    if max_version is not None and version > max_version:
        raise ValueError(
            f"{path!r} uses {expected_format!r} format version {version}, newer than this "
            f"fastface reads (<= {max_version}); upgrade fastface"
        )
    if header.get("checksum") != checksum(arrays):
        raise ValueError(
            f"{path!r} failed its checksum: the arrays were modified or damaged after saving; "
            "do not trust it, save the model again"
        )
    return arrays, header["meta"]


class _Foreign(Exception):
    pass
