"""Face loaders, metrics (against scikit-learn) and the preprocessing front end."""

from __future__ import annotations

import numpy as np
import pytest

from fastface.faces import datasets, metrics
from fastface.faces.preprocess import FrontEnd, PCAWhitener, as_images, augment, check_target, normalize_images


# --- loaders ---------------------------------------------------------------------------------
def test_load_olivetti_from_path_and_env(olivetti_npz, tmp_path, monkeypatch):
    from conftest import data_dir

    folder = data_dir()
    ds = datasets.load_olivetti(folder)
    assert ds.images.shape == (400, 64, 64) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images, olivetti_npz["images"])
    assert len(ds.names) == 40 and ds.target.max() == 39
    images, target, names = ds
    assert images is ds.images and names == ds.names
    monkeypatch.setenv("FASTFACE_DATA", str(folder))
    assert datasets.load_olivetti().images.shape == (400, 64, 64)


def test_load_yale(yale_npz):
    from conftest import data_dir

    ds = datasets.load_yale(data_dir() / "yale_faces.npz")
    assert ds.images.shape == (150, 64, 64) and len(ds.names) == 15
    assert ds.condition is not None and len(ds.condition) == 150


def test_missing_files_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTFACE_DATA", str(tmp_path))
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="FASTFACE_DATA"):
        datasets.load_yale()
    with pytest.raises(FileNotFoundError, match="olivetti_faces.npz"):
        datasets.load_olivetti(tmp_path / "nope.npz")
    bad = tmp_path / "olivetti_faces.npz"
    np.savez(bad, pictures=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="lacks the arrays"):
        datasets.load_olivetti(bad)


def test_lfw_and_digits():
    pytest.importorskip("skimage", reason="scikit-image (fastface[data]) not installed")
    lfw = datasets.load_lfw_subset()
    assert lfw.images.shape == (200, 25, 25) and lfw.target.sum() == 100
    dig = datasets.load_digits()
    assert dig.images.shape == (1797, 8, 8) and dig.images.max() <= 1.0 and len(dig.names) == 10


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow (fastface[data]) not installed")
    rng = np.random.default_rng(0)
    for person, n in (("alice", 3), ("bob", 2)):
        (tmp_path / person).mkdir()
        for i in range(n):
            arr = rng.integers(0, 256, size=(30 + i, 20, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / person / f"{i}.png")
    (tmp_path / "bob" / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = datasets.load_image_folder(tmp_path, size=(16, 12), verbose=False)
    assert ds.images.shape == (5, 16, 12) and ds.images.dtype == np.uint8
    assert ds.names == ["alice", "bob"] and list(ds.target) == [0, 0, 0, 1, 1]
    one = tmp_path / "one"
    (one / "carol").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(one / "carol" / "a.png")
    with pytest.raises(ValueError, match="only one person"):
        datasets.load_image_folder(one)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable photo"):
        datasets.load_image_folder(empty)
    with pytest.raises(FileNotFoundError):
        datasets.load_image_folder(tmp_path / "absent")


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load_dataset("imagenet")


# --- metrics vs scikit-learn -----------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_sklearn(seed):
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    rng = np.random.default_rng(seed)
    n = 37 + 50 * seed
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties
    fpr, tpr, thr = metrics.roc_curve(y, s)
    f2, t2, th2 = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_eer_far_frr_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert metrics.far_frr(y, s, 0.5) == (0.25, 0.25)
    assert metrics.far_frr(y, s, 0.65) == (0.0, 0.25)
    value, t = metrics.eer(y, s, return_threshold=True)
    assert value == pytest.approx(0.25)
    far, frr = metrics.far_frr(y, s, t)
    assert abs(far - frr) <= 0.25
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.eer([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 1.0
    t = metrics.threshold_at_far(y, s, 0.0)
    assert metrics.far_frr(y, s, t)[0] == 0.0 and t == 0.7


def test_eer_matches_roc_crossing():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(400), np.ones(400)]
    s = rng.normal(size=800) + 1.5 * y
    fpr, tpr, _ = metrics.roc_curve(y, s)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(metrics.eer(y, s) - (fpr[i] + 1 - tpr[i]) / 2) < 0.01


def test_reliability_and_ece_match_sklearn():
    cal = pytest.importorskip("sklearn.calibration", reason="scikit-learn not installed")
    rng = np.random.default_rng(1)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p ** 1.5).astype(int)
    mean_p, frac, counts = metrics.reliability_curve(y, p, n_bins=10)
    frac2, mean2 = cal.calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(mean_p, mean2)
    np.testing.assert_allclose(frac, frac2)
    assert counts.sum() == 500
    manual = np.sum(counts * np.abs(mean_p - frac)) / 500
    assert metrics.ece(y, p, 10) == pytest.approx(manual)
    assert metrics.ece([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0]) == 0.0
    # multiclass: confidence vs accuracy
    P = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    assert metrics.ece([0, 1, 1], P, n_bins=10) == pytest.approx((0.1 + 0.8 + 0.3) / 3)


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]), "only one class"),
        (lambda: metrics.roc_auc([0, 1, 2], [0.1, 0.2, 0.3]), "only 0 and 1"),
        (lambda: metrics.roc_auc([0, 1], [0.1, 0.2, 0.3]), "same length"),
        (lambda: metrics.roc_auc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: metrics.ece([0, 1], [0.1, 1.2]), r"\[0, 1\]"),
        (lambda: metrics.ece([0, 1], [0.1, 0.2], n_bins=0), "positive integer"),
        (lambda: metrics.threshold_at_far([0, 1], [0.1, 0.2], 2.0), "target_far"),
    ],
)
def test_metric_errors(call, err):
    with pytest.raises(ValueError, match=err):
        call()


# --- preprocessing ---------------------------------------------------------------------------
def test_as_images_conversions_and_errors():
    u8 = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    out = as_images(u8)
    assert out.dtype == np.float32 and out.max() == pytest.approx(230 / 255)
    np.testing.assert_allclose(as_images(u8.astype(np.int64)), out)
    assert as_images(u8[0], single=True).shape == (1, 3, 4)
    with pytest.raises(ValueError, match="mixed sizes"):
        as_images([np.zeros((4, 4)), np.zeros((5, 4))])
    with pytest.raises(TypeError, match="bool"):
        as_images(np.zeros((1, 4, 4), bool))
    with pytest.raises(TypeError, match="complex"):
        as_images(np.zeros((1, 4, 4), complex))
    with pytest.raises(ValueError, match="Divide"):
        as_images(np.full((1, 4, 4), 200.0))
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        as_images(np.zeros((1, 4, 4)), shape=(5, 5))
    with pytest.raises(ValueError, match="images\\[None\\]"):
        as_images(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        as_images(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"same length"):
        check_target([0, 1, 2], 2)
    with pytest.raises(TypeError):
        check_target(np.array(["a", "b"]), 2)


def test_normalize_and_augment():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 5, 6)).astype(np.float32)
    z = normalize_images(x).reshape(3, -1)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-4)
    np.testing.assert_allclose(normalize_images(2 * x + 0.3), normalize_images(x), atol=1e-5)
    big, t = augment(x, np.array([0, 1, 2]), shifts=1, mirror=True)
    assert big.shape == (54, 5, 6) and list(t[:6]) == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(big[:3], x)
    # a shift by (0, +1) moves column j to j+1 with the edge repeated
    s, _ = augment(x, np.arange(3), shifts=1, mirror=False)
    k = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)].index((0, 1))
    shifted = s[3 * (k + 1): 3 * (k + 2)]
    np.testing.assert_array_equal(shifted[:, :, 1:], x[:, :, :-1])
    np.testing.assert_array_equal(shifted[:, :, 0], x[:, :, 0])


def test_pca_whitener_against_sklearn():
    dec = pytest.importorskip("sklearn.decomposition", reason="scikit-learn not installed")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 20)) @ rng.normal(size=(20, 20))
    w = PCAWhitener(8).fit(x)
    z = w.transform(x)
    np.testing.assert_allclose(np.cov(z.T), np.eye(8), atol=1e-3)
    ref = dec.PCA(8, whiten=True, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(np.abs(z), np.abs(ref), rtol=1e-3, atol=1e-3)
    fe = FrontEnd(normalize=True, whiten=5).fit(rng.uniform(size=(10, 4, 4)).astype(np.float32))
    fe2 = FrontEnd.from_arrays(fe.config(), fe.arrays())
    img = rng.uniform(size=(2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(fe.transform(img), fe2.transform(img))
    assert fe.n_out == 5


def test_illumination_normalize_removes_brightness_and_shading():
    from fastface.faces.preprocess import illumination_normalize

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.9, size=(2, 32, 32))
    a = illumination_normalize(x)
    assert a.shape == x.shape and a.dtype == np.float32 and np.all(np.abs(a) <= 10)
    # a global brightness change is a constant factor after gamma; contrast equalisation removes it
    np.testing.assert_allclose(illumination_normalize(0.5 * x), a, atol=0.05)
    fe = FrontEnd(normalize=True, whiten=0, illumination=True).fit(x.astype(np.float32))
    back = FrontEnd.from_arrays(fe.config(), fe.arrays())
    np.testing.assert_array_equal(back.transform(x.astype(np.float32)), fe.transform(x.astype(np.float32)))


def test_platt_fit_matches_logistic_regression():
    lm = pytest.importorskip("sklearn.linear_model", reason="scikit-learn not installed")
    from fastface.faces._base import platt_fit

    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-(2 * z - 1)))).astype(int)
    a, b = platt_fit(z, y)
    n1, n0 = y.sum(), len(y) - y.sum()
    t = np.where(y == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    # the same soft-target log-loss, minimised by scikit-learn on duplicated weighted rows
    Z = np.r_[z, z][:, None]
    Y = np.r_[np.ones(400), np.zeros(400)]
    W = np.r_[t, 1 - t]
    ref = lm.LogisticRegression(C=1e6, tol=1e-10, max_iter=1000).fit(Z, Y, sample_weight=W)
    assert a == pytest.approx(ref.coef_[0, 0], rel=1e-3)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-3)
    # separable scores: finite, positive slope
    a2, _ = platt_fit(np.r_[rng.normal(-5, 1, 50), rng.normal(20, 1, 5)], np.r_[np.zeros(50), np.ones(5)])
    assert 0 < a2 < 1e3
