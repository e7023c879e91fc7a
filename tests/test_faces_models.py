"""PersonClassifier, Identifier, Verifier on real photos (Olivetti), their files and errors; the CLI.

Small, fast settings (few epochs, 40 whitening components) and sane floors, not the issue's
targets (those are measured by benches/faces_protocols.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastface import faces
from fastface.cli import main
from fastface.faces import metrics
from fastface.faces.verify import all_pairs

FAST = dict(whiten=40, epochs=12, batch_size=64, shifts=1)


def split(target, people, n_train=5, seed=0):
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for p in people:
        idx = rng.permutation(np.nonzero(target == p)[0])
        tr += list(idx[:n_train])
        te += list(idx[n_train:])
    return np.array(tr), np.array(te)


@pytest.fixture(scope="module")
def oli(olivetti_npz):
    return olivetti_npz["images"], olivetti_npz["target"].astype(np.int64)


@pytest.fixture(scope="module")
def ident(oli):
    X, y = oli
    tr, te = split(y, range(20))
    model = faces.Identifier(**FAST).fit(X[tr], y[tr])
    return model, tr, te


def test_person_classifier(oli, tmp_path):
    X, y = oli
    tr, te = split(y, range(20))
    clf = faces.PersonClassifier(3, hidden=(25, 15), cv=2, **FAST).fit(X[tr], y[tr])
    p = clf.predict_proba(X[te])
    yy = (y[te] == 3).astype(int)
    assert p.shape == (len(te),) and np.all((p >= 0) & (p <= 1))
    assert metrics.roc_auc(yy, p) >= 0.95
    assert metrics.ece(yy, p) <= 0.15
    np.testing.assert_array_equal(clf.predict(X[te], threshold=0.3), (p >= 0.3).astype(int))
    assert clf.calib[0] > 0  # higher raw score -> higher probability
    assert "not 100%" in type(clf).__doc__
    path = clf.save(tmp_path / "person.npz")
    back = faces.load(path)
    np.testing.assert_allclose(back.predict_proba(X[te]), p, rtol=1e-5, atol=1e-7)
    assert back.label == 3 and back.threshold == 0.5


def test_person_classifier_identity_layer(oli, capsys):
    X, y = oli
    tr, te = split(y, range(20))
    clf = faces.PersonClassifier(3, identity=32, cv=2, verbose=1, **FAST).fit(X[tr], y[tr])
    err = capsys.readouterr().err  # one labelled progress bar per training
    assert all(f"{which}, {part}" in err for which in ("fold 1/2", "fold 2/2", "final")
               for part in ("identity layer", "person layers"))
    widths = [(layer.units, layer.activation) for layer in clf.model.layers]
    assert widths == [(32, "tanh"), (25, "sigmoid"), (15, "sigmoid"), (1, "sigmoid")]
    assert all(len(net.layers) == 4 for net in clf.folds_)
    # the frozen first layer was trained to tell the 20 people apart: nearest class mean of its
    # outputs names the held-out photos' people
    H_tr = clf.model.forward_all(clf._features(X[tr]))[0]
    H_te = clf.model.forward_all(clf._features(X[te]))[0]
    means = np.stack([H_tr[y[tr] == p].mean(axis=0) for p in range(20)])
    nearest = np.argmin(((H_te[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(nearest == y[te]) >= 0.8
    # with only the person and "the rest" there are no identities to learn from: no such layer
    two = faces.PersonClassifier(1, identity=32, cv=2, **FAST).fit(X[tr], (y[tr] == 3).astype(np.int64))
    assert [layer.units for layer in two.model.layers] == [25, 15, 1]
    none = faces.PersonClassifier(3, identity=0, cv=2, **FAST).fit(X[tr], y[tr])
    assert [layer.units for layer in none.model.layers] == [25, 15, 1]
    assert "identity layer 32 tanh" in repr(clf) and "no identity layer" in repr(two)
    assert repr(faces.PersonClassifier(3)) == "PersonClassifier(person=3, hidden=(25, 15), identity=128, untrained)"
    with pytest.raises(ValueError, match="identity must be a layer width"):
        faces.PersonClassifier(3, identity=-1)


def test_person_classifier_bad_inputs(oli):
    X, y = oli
    with pytest.raises(ValueError, match="not in the data"):
        faces.PersonClassifier(77, **FAST).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="same length"):
        faces.PersonClassifier(0, **FAST).fit(X[:20], y[:19])
    with pytest.raises(TypeError, match="bool"):
        faces.PersonClassifier(0, **FAST).fit(X[:20] > 3, y[:20])
    with pytest.raises(ValueError, match="mixed sizes"):
        faces.PersonClassifier(0, **FAST).fit([X[0], X[1][:30]], [0, 1])
    with pytest.raises(ValueError, match="hidden"):
        faces.PersonClassifier(0, hidden=(25, 0))
    with pytest.raises(ValueError, match="calibration"):
        faces.PersonClassifier(0, calibration="isotonic")
    with pytest.raises(ValueError, match="not trained"):
        faces.PersonClassifier(0).predict_proba(X[:2])


def test_identifier(ident, oli, tmp_path):
    model, tr, te = ident
    X, y = oli
    P = model.predict_proba(X[te])
    assert P.shape == (len(te), 20)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    assert np.mean(model.predict(X[te]) == y[te]) >= 0.85
    ids, probs = model.top_k(X[te[:4]], k=3)
    assert ids.shape == probs.shape == (4, 3)
    assert np.all(np.diff(probs, axis=1) <= 0)
    np.testing.assert_array_equal(ids[:, 0], P[:4].argmax(1))
    with pytest.raises(ValueError, match="k must be"):
        model.top_k(X[te[:1]], k=21)
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        model.predict(X[te[:2], :32, :32])
    path = model.save(tmp_path / "ident.npz")
    back = faces.load(path)
    np.testing.assert_allclose(back.predict_proba(X[te]), P, rtol=1e-5, atol=1e-6)
    assert back.whiten_reg == model.whiten_reg == 0.1 and back.frontend.reg == 0.1  # the Identifier default


def test_whiten_reg_shrinks_the_whitening(oli):
    X, y = oli
    with pytest.raises(ValueError, match="whiten_reg must be a number >= 0"):
        faces.Identifier(whiten_reg=-0.1)
    pure = faces.Identifier(whiten_reg=0.0, **FAST)
    shrunk = faces.Identifier(whiten_reg=1.0, **FAST)
    for m in (pure, shrunk):
        m._fit_frontend(X[:100].astype(np.float32) / 255)
    a, b = pure.frontend.pca.scale, shrunk.frontend.pca.scale
    assert np.all(b < a) and b[-1] / b[0] < a[-1] / a[0]  # faint components amplified less
    assert pure.get_params()["whiten_reg"] == 0.0 and shrunk.get_params()["whiten_reg"] == 1.0


def test_identifier_unknown_and_enroll(oli):
    X, y = oli
    tr, te = split(y, range(20))
    model = faces.Identifier(**FAST).fit(X[tr], y[tr])
    half = len(te) // 2
    strangers = np.nonzero((y >= 20) & (y < 30))[0]
    tune_idx = np.r_[te[:half], strangers]
    tune_t = np.r_[y[te[:half]], -np.ones(len(strangers), np.int64)]
    thr = model.tune_unknown(X[tune_idx], tune_t, far=0.1)
    conf = model.predict_proba(X[strangers]).max(1)
    assert np.mean(conf >= thr) <= 0.1
    assert np.mean(model.predict(X[strangers]) == -1) >= 0.9
    names = model.predict_names(X[strangers[:2]])
    assert names == ["unknown"] * 2 or all(isinstance(n, str) for n in names)
    model.unknown_threshold = None
    # enrol person 35 from 3 photos; the hidden layers stay as they were
    W1 = model.model.layers[0].W.copy()
    photos = np.nonzero(y == 35)[0]
    new = model.enroll(X[photos[:3]], "newcomer")
    assert new == 20 and model.names[new] == "newcomer"
    np.testing.assert_array_equal(model.model.layers[0].W, W1)
    assert np.mean(model.predict(X[photos[3:]]) == new) >= 0.5
    assert np.mean(model.predict(X[te]) == y[te]) >= 0.8
    with pytest.raises(ValueError, match="already known"):
        model.enroll(X[photos[:1]], "newcomer")


def test_verifier_open_set(oli, tmp_path):
    X, y = oli
    train = y < 20
    ver = faces.Verifier(refit=False, **FAST).fit(X[train], y[train])
    assert ver.tuning["people"] == 4 and 0 < ver.tuning["eer"] < 0.5
    unseen = y >= 30
    E = ver.embed(X[unseen])
    assert ver.embedding == "both" and E.shape == (100, 64 + 40)  # hidden units + whitening components
    assert ver.wccn == 0.5 and ver.wccn_transform.shape == (104, 104)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1, rtol=1e-6)
    i, j, same = all_pairs(y[unseen])
    s = ver.similarity(X[unseen][i], X[unseen][j])
    np.testing.assert_allclose(s, np.sum(E[i] * E[j], axis=1), rtol=1e-5, atol=1e-6)
    assert metrics.roc_auc(same, s) >= 0.9
    assert metrics.eer(same, s) <= 0.2
    v = ver.verify(X[unseen][0], X[unseen][1])
    assert v.same == (v.score >= ver.threshold) and 0 <= v.probability <= 1
    assert ver.probability(0.9) > ver.probability(0.1)
    info = ver.tune_threshold(X[unseen], y[unseen], far=0.05)
    assert info["far"] <= 0.05 and ver.threshold == info["threshold"]
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        ver.verify(X[0], X[1][:48, :48])
    with pytest.raises(ValueError, match="one photo"):
        ver.verify(X[:3], X[1])
    back = faces.load(ver.save(tmp_path / "ver.npz"))
    np.testing.assert_allclose(back.similarity(X[:5], X[5:10]), ver.similarity(X[:5], X[5:10]), rtol=1e-5, atol=1e-6)
    assert back.threshold == ver.threshold and back.embedding == "both"


def test_wccn_matrix_whitens_within_person_spread():
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(20), 30)
    centres = rng.normal(size=(20, 3)) * 3.0
    # within one person: large spread along axis 0, small along axes 1 and 2
    E = centres[people] + rng.normal(size=(600, 3)) * np.array([2.0, 0.2, 0.2])
    T = faces.wccn_matrix(E, people, shrink=1e-6)
    D = E - centres[people]
    S = np.cov(D @ T, rowvar=False)
    np.testing.assert_allclose(S / np.trace(S) * 3, np.eye(3), atol=0.15)  # within-person spread made round
    T1 = faces.wccn_matrix(E, people, shrink=1e6)
    np.testing.assert_allclose(T1 / T1[0, 0], np.eye(3), atol=1e-3)  # a large shrink is the identity
    assert faces.wccn_matrix(E, np.arange(600), shrink=0.5) is None  # one photo per person: no estimate


def test_verifier_without_wccn_and_bad_wccn(oli):
    X, y = oli
    ver = faces.Verifier(wccn=None, refit=False, **dict(FAST, epochs=2)).fit(X[y < 10], y[y < 10])
    assert ver.wccn_transform is None and ver.embed(X[:3]).shape == (3, 64 + 40)
    for bad in (0, -1.0, "0.5", True):
        with pytest.raises(ValueError, match="wccn"):
            faces.Verifier(wccn=bad)


def test_verifier_frontend_embedding_and_adapt(oli):
    X, y = oli
    ver = faces.Verifier(embedding="frontend", tune_fraction=0.0, **dict(FAST, epochs=2)).fit(X[y < 10], y[y < 10])
    assert ver.tuning["people"] == 0 and "optimistic" in ver.tuning["note"]
    unseen = (y >= 30)
    ver.adapt(X[unseen])
    E = ver.embed(X[unseen])
    assert E.shape == (100, 40)  # the 40 whitening components of FAST
    i, j, same = all_pairs(y[unseen])
    assert metrics.roc_auc(same, np.sum(E[i] * E[j], axis=1)) >= 0.85
    with pytest.raises(ValueError, match="embedding"):
        faces.Verifier(embedding="pixels")


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastface file"):
        faces.load(bad)


# --- command line ----------------------------------------------------------------------------
def test_cli_train_predict_verify(olivetti_npz, tmp_path, capsys):
    from conftest import data_dir

    data = str(data_dir())
    out = tmp_path / "m.npz"
    args = ["train", "--dataset", "olivetti", "--data", data, "--hidden", "32", "--epochs", "3", "--quiet"]
    assert main(args + ["--task", "identify", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out results (identify)" in text and "accuracy" in text and "ece" in text
    photo = tmp_path / "p.npy"
    np.save(photo, olivetti_npz["images"][0])
    assert main(["predict", str(out), str(photo)]) == 0
    assert "top 3" in capsys.readouterr().out
    # a fresh process knows every kind of face model file (no class imported beforehand)
    import subprocess
    import sys

    code = f"from fastface.faces import load; print(type(load({str(out)!r})).__name__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("conftest").REPO))
    assert run.stdout.strip() == "Identifier", run.stderr
    vout = tmp_path / "v.npz"
    assert main(args + ["--task", "verify", "--out", str(vout)]) == 0
    assert "eer" in capsys.readouterr().out
    ref = tmp_path / "r.npy"
    np.save(ref, olivetti_npz["images"][1])
    assert main(["verify", str(vout), str(photo), str(ref)]) == 0
    assert "P(same)" in capsys.readouterr().out
    small = tmp_path / "s.npy"
    np.save(small, olivetti_npz["images"][1][:32, :32])
    assert main(["verify", str(vout), str(photo), str(small)]) == 2
    assert "same size" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "olivetti", "--task", "person=99", "--out", "m.npz"], "not in the data"),
        (["train", "--dataset", "olivetti", "--task", "cluster", "--out", "m.npz"], "--task must be"),
        (["train", "--dataset", "olivetti", "--task", "identify", "--hidden", "25,x", "--out", "m.npz"], "--hidden"),
        (["train", "--dataset", "nowhere", "--task", "identify", "--out", "m.npz"], "unknown dataset"),
        (["predict", "missing.npz", "a.png"], "not found"),
    ],
)
def test_cli_errors(argv, message, olivetti_npz, capsys, monkeypatch, tmp_path):
    from conftest import data_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTFACE_DATA", str(data_dir()))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_person_on_lfw(tmp_path, capsys):
    pytest.importorskip("skimage", reason="scikit-image (fastface[data]) not installed")
    out = tmp_path / "face.npz"
    assert main(["train", "--dataset", "lfw-subset", "--task", "person=face", "--epochs", "8", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "auc" in text
    auc = float(text.split("auc: ")[1].split(",")[0])
    assert auc >= 0.9
