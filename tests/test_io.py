"""fastface.io and model save/load: round trips, atomic writes, and every kind of bad file."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import fastface as ff
from fastface.io import META_KEY, load_npz, save_npz


def _arrays():
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(4, 3)).astype(np.float32), "ids": np.arange(5), "flag": np.array([True, False])}


def test_npz_round_trip(tmp_path):
    path = tmp_path / "obj.npz"
    meta = {"labels": ["ann", "bob"], "threshold": 0.5, "nested": {"k": [1, 2]}}
    assert save_npz(path, _arrays(), meta, format="test.obj") == str(path)
    arrays, back = load_npz(path, "test.obj")
    assert back == meta
    for name, arr in _arrays().items():
        assert arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(arrays[name], arr)
    assert not [p for p in os.listdir(tmp_path) if p != "obj.npz"]  # no temp files left


def test_npz_refuses_what_it_cannot_store(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="only bool, integer and float"):
        save_npz(path, {"s": np.array(["a"])}, {}, format="t")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_npz(path, {}, {"x": np.float32(1)}, format="t")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_npz(path, {}, {"x": float("nan")}, format="t")
    with pytest.raises(ValueError, match="format name"):
        save_npz(path, {}, {})
    with pytest.raises(ValueError, match="array names"):
        save_npz(path, {META_KEY: np.zeros(1)}, {}, format="t")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_npz(tmp_path / "missing" / "x.npz", {}, {}, format="t")
    assert not os.listdir(tmp_path)


def test_failed_save_leaves_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_npz(path, {"a": np.ones(3)}, {"v": 1}, format="t")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, {"a": np.zeros(3)}, {"v": 2}, format="t")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_corrupt_truncated_tampered_foreign_files(tmp_path):
    good = tmp_path / "good.npz"
    save_npz(good, _arrays(), {"a": 1}, format="test.obj")
    data = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_npz(truncated, "test.obj")

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_npz(garbage, "test.obj")

    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_npz(empty, "test.obj")

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, W=np.ones(3))
    with pytest.raises(ValueError, match="not a fastface file"):
        load_npz(foreign, "test.obj")

    npy = tmp_path / "single.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match="not a fastface file"):
        load_npz(npy, "test.obj")

    with pytest.raises(ValueError, match="not the expected 'fastface.model'"):
        load_npz(good, "fastface.model")

    # tampered: same metadata, one weight changed
    arrays, _ = load_npz(good, "test.obj")
    with zipfile.ZipFile(good) as zf:
        raw_meta = np.load(zf.open(META_KEY + ".npy"))
    arrays["W"][0, 0] += 1.0
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays, **{META_KEY: raw_meta})
    with pytest.raises(ValueError, match="checksum"):
        load_npz(tampered, "test.obj")

    # newer version than the reader supports
    header = json.loads(raw_meta.tobytes())
    header["format_version"] = 99
    newer = tmp_path / "newer.npz"
    np.savez(newer, **load_npz(good, "test.obj")[0], **{META_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(ValueError, match="newer"):
        load_npz(newer, "test.obj", max_version=1)

    bad_json = tmp_path / "badjson.npz"
    np.savez(bad_json, **{META_KEY: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(ValueError, match="corrupt metadata"):
        load_npz(bad_json, "test.obj")

    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "nope.npz", "test.obj")


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, **{META_KEY: np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(ValueError):
        load_npz(path, "test.obj")


# --- model save / load ----------------------------------------------------------------------
def _trained(normalize=None, dtype="float32"):
    rng = np.random.default_rng(0)
    X = rng.random((60, 12)) * 255
    y = rng.integers(0, 3, size=60)
    model = ff.Sequential([ff.Dense(6, "tanh"), ff.Dense(3, "softmax")], dtype=dtype, seed=3, normalize=normalize)
    model.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=0.01)
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    model.meta = {"labels": ["a", "b", "c"], "threshold": 0.4}
    return model, X, y


@pytest.mark.parametrize("normalize,dtype", [(None, "float32"), ("standard", "float64")])
def test_model_round_trip_continues_training_identically(tmp_path, normalize, dtype):
    model, X, y = _trained(normalize, dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    back = ff.load_model(path)
    assert repr(back) == repr(model)
    assert back.meta == model.meta and back.loss == model.loss
    assert back.input_contract == model.input_contract
    assert back.dtype == model.dtype
    assert back.optimizer.get_config() == model.optimizer.get_config()
    assert back.optimizer.iterations == model.optimizer.iterations
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    # same optimizer state -> one more epoch (no shuffle) gives the same weights
    model.fit(X, y, epochs=1, shuffle=False, verbose=0)
    back.fit(X, y, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_uncompiled_model_round_trip(tmp_path):
    model = ff.Sequential([ff.Dense(2, "relu"), ff.Dense(1)], input_dim=3)
    model.save(tmp_path / "m.npz")
    back = ff.load_model(tmp_path / "m.npz")
    assert back.loss is None and back.layers[1].activation == "linear"
    np.testing.assert_array_equal(back.layers[0].W, model.layers[0].W)


def test_model_load_refuses_bad_files(tmp_path):
    model, _, _ = _trained()
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        ff.load_model(cut)
    other = tmp_path / "other.npz"
    save_npz(other, {"x": np.ones(2)}, {}, format="fastface.faces.verifier")
    with pytest.raises(ValueError, match="not the expected 'fastface.model'"):
        ff.load_model(other)
    # a model file whose metadata lost a layer is refused, not half-loaded
    arrays, meta = load_npz(path, "fastface.model")
    meta["layers"] = meta["layers"][:1]
    broken = tmp_path / "broken.npz"
    save_npz(broken, arrays, meta, format="fastface.model")
    with pytest.raises(ValueError, match="inconsistent"):
        ff.load_model(broken)
    with pytest.raises(ValueError, match="not built"):
        ff.Sequential([ff.Dense(1)]).save(tmp_path / "unbuilt.npz")
