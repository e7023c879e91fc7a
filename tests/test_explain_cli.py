"""fastface.explain on real faces, its PNG grids, and the `explain` / `units` commands end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastface as ff
import fastface.explain as fx
from fastface.cli import main

try:
    import matplotlib  # noqa: F401
    import PIL  # noqa: F401

    HAS_PLOTS = True
except ImportError:
    HAS_PLOTS = False
needs_plots = pytest.mark.skipif(
    not HAS_PLOTS, reason="PNG grids need matplotlib and Pillow (pip install fastface[plots])"
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    from PIL import Image

    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def small_faces(olivetti_npz):
    """Olivetti at 32x32 (2x2 mean pooled), 0..1: images (400, 32, 32), target (400,)."""
    imgs = olivetti_npz["images"].astype(np.float64) / 255.0
    imgs = imgs.reshape(400, 32, 2, 32, 2).mean(axis=(2, 4))
    return imgs, olivetti_npz["target"]


@pytest.fixture(scope="module")
def face_model(small_faces):
    """A small identifier trained on 30 of the 40 people's photos: 1024-24-12-40, float64."""
    imgs, target = small_faces
    model = ff.Sequential([ff.Dense(24, "tanh"), ff.Dense(12, "sigmoid"), ff.Dense(40, "softmax")],
                          input_dim=1024, dtype="float64", seed=0, normalize="standard")
    model.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=3e-3)
    train = np.arange(400) % 10 < 8
    model.fit(imgs[train].reshape(-1, 1024), target[train], epochs=12, batch_size=32, verbose=0)
    model.meta["image_shape"] = [32, 32]
    return model


# --- real faces ------------------------------------------------------------------------------
def test_real_face_saliency_is_exact_and_ig_complete(face_model, small_faces):
    imgs, target = small_faces
    test = np.flatnonzero(np.arange(400) % 10 >= 8)
    acc = np.mean(face_model.predict_classes(imgs[test].reshape(-1, 1024)) == target[test])
    assert acc > 0.5  # it learned faces (chance is 2.5%)
    x = imgs[test[0]].reshape(-1)
    rng = np.random.default_rng(0)
    pixels = rng.choice(1024, 24, replace=False)
    for layer in (1, 2, 3):
        S = fx.saliency(face_model, x, layer)
        fd = np.empty((S.shape[0], pixels.size))
        for i, p in enumerate(pixels):
            e = np.zeros(1024)
            e[p] = 1e-6
            fd[:, i] = (face_model.forward_all(x + e)[layer][0] - face_model.forward_all(x - e)[layer][0]) / 2e-6
        assert np.max(np.abs(S[:, pixels] - fd)) <= 1e-6 * np.max(np.abs(fd))
        A, gap = fx.integrated_gradients(face_model, x, layer, return_gap=True)
        ends = face_model.forward_all(np.stack([x, np.zeros(1024)]))[layer]
        np.testing.assert_allclose(A.sum(axis=1), ends[0] - ends[1], rtol=1e-2, atol=1e-8)
        assert gap.max() < 0.01
    # the predicted person's evidence: occluding the face lowers its probability on average
    person = int(face_model.predict_classes(x[None])[0])
    occ = fx.occlusion(face_model, x, -1, unit=person, window=6, stride=3)
    assert occ.shape == (1024,) and occ.mean() > 0


def test_real_face_unit_images_and_maximize(face_model):
    U1 = fx.unit_images(face_model, 1)
    assert U1.shape == (24, 32, 32)
    W1, W2 = face_model.layers[0].W, face_model.layers[1].W
    std = face_model.transform_inputs(np.ones(1024)) - face_model.transform_inputs(np.zeros(1024))  # 1/std
    np.testing.assert_allclose(U1[5].ravel(), W1[:, 5] * std[0], rtol=1e-10)  # raw-pixel view
    np.testing.assert_array_equal(fx.unit_images(face_model, 1, raw=False)[5].ravel(), W1[:, 5])
    U2 = fx.unit_images(face_model, 2, raw=False)
    np.testing.assert_allclose(U2.reshape(12, -1), (W1 @ W2).T, rtol=1e-12)
    img, value = fx.maximize_unit(face_model, 2, 3, steps=60, return_activation=True)
    assert img.shape == (32, 32)
    start = fx.layer_activations(face_model, np.zeros(1024), 2)[3]
    assert value > start


@needs_plots
def test_face_task_identifier_explained_in_pixels(small_faces, tmp_path, capsys):
    """A faces.Identifier (per-image normalisation + whitening PCA front end) explained w.r.t.
    the photo's pixels, through the Python API and through its saved file on the CLI."""
    faces = pytest.importorskip("fastface.faces", reason="face tasks not available")
    imgs, target = small_faces
    ident = faces.Identifier(hidden=(16,), whiten=30, shifts=0, mirror=False, epochs=3, seed=0)
    ident.fit(imgs[::2], target[::2])
    x = imgs[1].reshape(-1)

    def f(v, layer):
        F = ident.frontend.transform(v.reshape(-1, 32, 32).astype(np.float32))
        return ident.model.forward_all(F)[layer].astype(np.float64)

    pixels = np.arange(0, 1024, 41)
    for layer in (1, 2):
        S = fx.saliency(ident, x, layer)
        assert S.shape == (ident.model.layers[layer - 1].units, 1024)
        E = np.eye(1024)[pixels] * 1e-2
        fd = np.stack([(f(x + e, layer)[0] - f(x - e, layer)[0]) / 2e-2 for e in E], axis=1)
        assert np.max(np.abs(S[:, pixels] - fd)) <= 1e-2 * np.max(np.abs(fd))  # float32 pipeline
    assert fx.unit_images(ident, 1).shape == (16, 32, 32)  # shape from the front end
    path = ident.save(str(tmp_path / "ident.npz"))
    np.save(tmp_path / "photo.npy", imgs[1])
    assert main(["explain", path, str(tmp_path / "photo.npy"), "--layer", "-1", "--method", "ig",
                 "--max-units", "3", "--out", str(tmp_path / "ig.png")]) == 0
    assert main(["units", path, "--layer", "1", "--out", str(tmp_path / "u.png")]) == 0
    read_png(tmp_path / "ig.png")
    read_png(tmp_path / "u.png")
    assert "through the input stages" in capsys.readouterr().out


@needs_plots
def test_demo_pictures(face_model, small_faces, tmp_path):
    imgs, _ = small_faces
    paths = fx.demo_pictures(face_model, imgs[0], None, tmp_path / "demo", max_units=6, saliency_units=3)
    names = sorted(p.split("/")[-1] for p in paths)
    assert names == ["saliency_layer1.png", "saliency_layer2.png", "units_layer1.png", "units_layer2.png"]
    for p in paths:
        w, h = read_png(p)
        assert w > 100 and h > 100


@needs_plots
def test_readme_figures_are_drawn(face_model, small_faces, tmp_path):
    from fastface.explain.figures import make_figures

    imgs, target = small_faces
    X = imgs.reshape(400, -1)
    test = np.flatnonzero(np.arange(400) % 10 >= 8)
    paths = make_figures(face_model, X, target, test, str(tmp_path), steps=5)
    assert sorted(paths) == ["maximize_layer2", "methods_output", "saliency_layer1", "saliency_layer2",
                             "templates_output", "units_layer1", "units_layer2", "why_not_100"]
    for path in paths.values():
        read_png(path)


# --- PNG grids -----------------------------------------------------------------------------------
@needs_plots
def test_save_grid_writes_a_png(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 6, 7))
    out = fx.save_grid(maps, tmp_path / "grid.png", titles=list("abcde"), ncols=3, dpi=50)
    assert out == str(tmp_path / "grid.png")
    w, h = read_png(out)
    assert w > h > 0  # 3 columns x 2 rows of wider-than-tall panels
    photo = rng.random((6, 7))
    read_png(fx.save_grid(maps.reshape(5, 42), tmp_path / "flat.png", shape=(6, 7), overlay=photo,
                          shared_scale=False))
    read_png(fx.save_grid(maps[0], tmp_path / "one.png", colorbar=False))
    read_png(fx.save_grid(np.zeros((2, 3, 3)), tmp_path / "zeros.png"))  # all-zero maps are fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.png", "grid.png", "one.png", "zeros.png"]


@needs_plots
def test_save_grid_is_centred_at_zero(tmp_path):
    from PIL import Image

    maps = np.array([[[-1.0, 0.0, 0.25]]])
    path = fx.save_grid(maps, tmp_path / "c.png", colorbar=False, panel_size=3, dpi=40)
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    row = rgb[rgb.shape[0] // 2]
    third = rgb.shape[1] // 3
    left, mid, right = row[third // 2], row[third + third // 2], row[2 * third + third // 2]
    assert left[2] > left[0]            # negative: blue
    assert np.all(mid > 230)           # zero: white
    assert right[0] > right[2] and right[0] > 230  # small positive: light red, not white


@needs_plots
def test_save_grid_bad_inputs(tmp_path):
    maps = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="must end in .png"):
        fx.save_grid(maps, tmp_path / "x.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fx.save_grid(maps, tmp_path / "nope" / "x.png")
    with pytest.raises(ValueError, match="one per panel"):
        fx.save_grid(maps, tmp_path / "x.png", titles=["a"])
    with pytest.raises(ValueError, match="overlay must be"):
        fx.save_grid(maps, tmp_path / "x.png", overlay=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\(K, 15\)"):
        fx.save_grid(np.zeros((2, 16)), tmp_path / "x.png", shape=(3, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        fx.save_grid(np.full((1, 2, 2), np.inf), tmp_path / "x.png")
    with pytest.raises(TypeError, match="numeric"):
        fx.save_grid(np.array([["a"]]), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())  # nothing half-written


# --- CLI -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(face_model, small_faces, tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("cli")
    path = str(folder / "faces.npz")
    face_model.save(path)
    imgs, _ = small_faces
    Image.fromarray((imgs[7] * 255).round().astype(np.uint8)).resize((64, 64)).save(folder / "face.png")
    np.save(folder / "face.npy", imgs[7])
    return folder, path


@needs_plots
@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "ig", "occlusion"])
def test_cli_explain_every_method(saved, method, capsys):
    folder, model = saved
    out = folder / f"{method}.png"
    args = ["explain", model, str(folder / "face.png"), "--layer", "2", "--method", method,
            "--out", str(out), "--max-units", "4", "--samples", "4"]
    assert main(args) == 0
    read_png(out)
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    if method == "ig":
        assert "completeness gap" in printed


@needs_plots
def test_cli_explain_one_unit_from_npy_and_units(saved, capsys):
    folder, model = saved
    assert main(["explain", model, str(folder / "face.npy"), "--layer", "-1", "--unit", "3",
                 "--out", str(folder / "u.png"), "--abs", "--no-overlay"]) == 0
    read_png(folder / "u.png")
    assert main(["units", model, "--layer", "2", "--out", str(folder / "units2.png")]) == 0
    read_png(folder / "units2.png")
    assert "12 of 12 units of layer 2" in capsys.readouterr().out
    assert main(["units", model, "--layer", "1", "--method", "maximize", "--steps", "5",
                 "--max-units", "2", "--out", str(folder / "max.png")]) == 0
    read_png(folder / "max.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "{model}", "{folder}/face.png", "--layer", "9", "--out", "{folder}/e.png"], "layer must be in 1..3"),
        (["explain", "{model}", "{folder}/face.png", "--layer", "1", "--unit", "99", "--out", "{folder}/e.png"], "24 units"),
        (["explain", "{model}", "{folder}/missing.png", "--layer", "1", "--out", "{folder}/e.png"], "not found"),
        (["explain", "{folder}/missing.npz", "{folder}/face.png", "--layer", "1", "--out", "{folder}/e.png"], "not found"),
        (["explain", "{model}", "{folder}/face.npz", "--layer", "1", "--out", "{folder}/e.png"], "not found"),
        (["explain", "{model}", "{folder}/face.png", "--layer", "1", "--out", "{folder}/e.jpg"], "must end in .png"),
        (["explain", "{model}", "{folder}/faces.npz", "--layer", "1", "--out", "{folder}/e.png"], "not an image"),
        (["units", "{model}", "--layer", "1", "--shape", "10", "10", "--out", "{folder}/e.png"], "H \\* W = 1024"),
        (["units", "{folder}/face.png", "--layer", "1", "--out", "{folder}/e.png"], ""),
    ],
)
@needs_plots
def test_cli_errors_are_one_line(saved, args, message, capsys):
    folder, model = saved
    args = [a.format(model=model, folder=folder) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastface {args[0]}: error: ") and "\n" not in err
    assert pytest.importorskip("re").search(message, err)


@needs_plots
def test_cli_wrong_size_npy(saved, capsys):
    folder, model = saved
    np.save(folder / "small.npy", np.zeros((8, 8)))
    assert main(["explain", model, str(folder / "small.npy"), "--layer", "1", "--out", str(folder / "s.png")]) == 2
    assert "1024 pixels" in capsys.readouterr().err


def test_cli_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    for word in ("--layer", "--unit", "--method", "--out", "occlusion", "smoothgrad"):
        assert word in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SystemExit):
            main(["units", "--help"])
    assert "--layer" in capsys.readouterr().out


@needs_plots
def test_missing_matplotlib_is_a_clear_error(saved, monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import now fails
    with pytest.raises(fx.MissingDependencyError, match=r"pip install fastface\[plots\]"):
        fx.save_grid(np.zeros((1, 2, 2)), tmp_path / "x.png")
    folder, model = saved
    assert main(["units", model, "--layer", "1", "--out", str(tmp_path / "u.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastface units: error: ") and "fastface[plots]" in err and "\n" not in err
