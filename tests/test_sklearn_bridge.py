"""fastface.sklearn: scikit-learn's estimator checks, and the estimators in sklearn's tools."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="fastface.sklearn needs scikit-learn (pip install fastface[data])")
if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):
    pytest.skip(
        f"scikit-learn {sklearn.__version__} is too old for these tests (the estimator-check API "
        "with expected_failed_checks and the tags API need >= 1.6)",
        allow_module_level=True,
    )

from sklearn.base import clone  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastface.sklearn as ffsk  # noqa: E402
from fastface.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Small nets and few epochs keep the ~100 checks fast; the checks' own accuracy bars still hold.
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0),
    MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.1, early_stopping=True,
                  max_iter=100, random_state=0),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: ffsk.SKIPPED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --- real data: scikit-learn's digits -----------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def test_pipeline_on_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(25, 15), max_iter=60, random_state=0))
    _quiet(pipe.fit, X_tr, y_tr)
    assert pipe.score(X_te, y_te) >= 0.93
    proba = pipe.predict_proba(X_te)
    assert proba.shape == (len(X_te), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(pipe.classes_, np.arange(10))
    logits = pipe.decision_function(X_te)
    np.testing.assert_array_equal(logits.argmax(axis=1), pipe.predict(X_te))


def test_grid_search_on_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=50, random_state=0))
    grid = GridSearchCV(
        pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)], "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3
    )
    _quiet(grid.fit, X_tr, y_tr)
    assert set(grid.cv_results_["params"][0]) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] == (32,)  # 8 units is too few
    assert grid.score(X_te, y_te) >= 0.9


def test_calibrated_classifier_on_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
    y_tr, y_te = (y_tr == 3).astype(int), (y_te == 3).astype(int)  # "is it a 3?": imbalanced binary
    base = MLPClassifier(hidden_layer_sizes=(25, 15), activation="logistic", max_iter=40, random_state=0)
    cal = CalibratedClassifierCV(base, cv=3, method="sigmoid")
    _quiet(cal.fit, X_tr, y_tr)
    p = cal.predict_proba(X_te)
    assert p.shape == (len(X_te), 2)
    assert cal.score(X_te, y_te) >= 0.95
    # calibrated probabilities: mean predicted rate close to the true rate
    assert abs(p[:, 1].mean() - y_te.mean()) < 0.05


def test_binary_decision_function_is_the_logit(digits):
    X_tr, _, y_tr, _ = digits
    X, y = X_tr / 16.0, np.where(X_tr[:, 20] > 8, "bright", "dark")
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(10,), max_iter=20, random_state=0).fit, X, y)
    z = clf.decision_function(X)
    p = clf.predict_proba(X)
    assert z.shape == (len(X),) and p.shape == (len(X), 2)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.where(p[:, 1] >= 0.5, "dark", "bright"))
    assert list(clf.classes_) == ["bright", "dark"]


# --- the estimator is fastface's model underneath -------------------------------------------------
def test_same_training_as_the_fastface_model(digits):
    """MLPClassifier(sgd) is exactly Sequential + SGD with weight_decay = alpha / batch."""
    import fastface as ff

    X_tr, _, y_tr, _ = digits
    X = (X_tr / 16.0).astype(np.float32)
    clf = MLPClassifier(
        hidden_layer_sizes=(20,), activation="tanh", solver="sgd", learning_rate_init=0.05,
        momentum=0.8, nesterovs_momentum=False, alpha=0.32, batch_size=32, max_iter=3, tol=0.0,
        n_iter_no_change=100, random_state=7,
    )
    _quiet(clf.fit, X, y_tr)
    seed = clf.model_.seed
    model = ff.Sequential([ff.Dense(20, "tanh"), ff.Dense(10, "softmax")], input_dim=64, dtype="float32", seed=seed)
    model.compile("categorical_crossentropy", ff.optim.SGD(0.05, momentum=0.8, weight_decay=0.32 / 32))
    model.fit(X, y_tr, epochs=3, batch_size=32, verbose=0)
    for ours, ref in zip(clf.coefs_ + clf.intercepts_, [l.W for l in model.layers] + [l.b for l in model.layers]):
        np.testing.assert_array_equal(ours, ref)
    assert clf.coefs_[0].dtype == np.float32 and clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert clf.t_ == 3 * len(X)


def test_stops_when_the_loss_stalls_and_warns_otherwise():
    rng = np.random.default_rng(0)
    X = rng.random((120, 5))
    y = (X[:, 0] > 0.5).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, tol=10.0, n_iter_no_change=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)  # a huge tol: no epoch counts as an improvement, so it stops early
    assert clf.n_iter_ == 5  # as scikit-learn: epoch 1 sets best_loss_, epochs 2..5 stall (4 > 3)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.set_params(tol=0.0, max_iter=3).fit(X, y)
    assert clf.n_iter_ == 3


def test_adaptive_learning_rate_divides_by_five():
    rng = np.random.default_rng(1)
    X = rng.random((60, 4))
    y = X.sum(axis=1)
    reg = MLPRegressor(
        hidden_layer_sizes=(4,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.1,
        tol=100.0, n_iter_no_change=1, max_iter=5, random_state=0,
    )
    _quiet(reg.fit, X, y)
    assert reg.model_.optimizer.learning_rate == pytest.approx(0.1 / 25)  # two stalls of two epochs


def test_partial_fit_continues_and_needs_classes(digits):
    X_tr, X_te, y_tr, y_te = digits
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_tr, y_tr)
    halves = np.array_split(np.arange(len(X_tr)), 2)
    clf.partial_fit(X_tr[halves[0]], y_tr[halves[0]], classes=np.arange(10))
    t0 = clf.model_.optimizer.iterations
    for _ in range(15):
        for h in halves:
            clf.partial_fit(X_tr[h], y_tr[h])
    assert clf.n_iter_ == 31 and clf.model_.optimizer.iterations > t0  # optimizer state kept
    assert clf.score(X_te, y_te) >= 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X_tr[:5], np.full(5, 11))


def test_regressor_multi_output_and_float32(digits):
    X_tr, _, _, _ = digits
    X = (X_tr / 16.0).astype(np.float32)
    Y = np.column_stack([X[:, 10] + X[:, 20], X[:, 30] - X[:, 40]])
    reg = _quiet(MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, random_state=0).fit, X, Y)
    assert reg.model_.dtype == np.float32 and reg.coefs_[0].dtype == np.float32
    assert reg.predict(X).shape == (len(X), 2) and reg.score(X, Y) > 0.8
    reg1 = _quiet(clone(reg).fit, X, Y[:, 0])
    assert reg1.predict(X).shape == (len(X),)
    reg64 = _quiet(clone(reg).set_params(dtype="float64").fit, X, Y)
    assert reg64.coefs_[0].dtype == np.float64


def test_pickle_round_trip_keeps_predictions_and_training_state(digits):
    X_tr, X_te, y_tr, _ = digits
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit, X_tr / 16, y_tr)
    blob = pickle.dumps(clf)
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(X_te / 16), clf.predict_proba(X_te / 16))
    assert back.coefs_[0] is back.model_.layers[0].W  # still views of the live model
    np.testing.assert_array_equal(back.model_.optimizer.s1, clf.model_.optimizer.s1)
    back.partial_fit(X_tr / 16, y_tr)
    assert back.n_iter_ == clf.n_iter_ + 1


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"hidden_layer_sizes": (0,)}, ValueError, r"hidden_layer_sizes must be > 0, got \[0\]"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
        ({"solver": "lbfgs"}, ValueError, "no 'lbfgs'"),
        ({"learning_rate": "invscaling"}, ValueError, "not supported"),
        ({"alpha": -1.0}, ValueError, "alpha must be >= 0"),
        ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
        ({"momentum": 1.0}, ValueError, "momentum must be >= 0 and < 1"),
        ({"batch_size": "big"}, TypeError, "batch_size must be an int"),
        ({"dtype": "float16"}, ValueError, "dtype must be None, .float32. or .float64."),
        ({"dtype": "not-a-dtype"}, ValueError, "dtype must be None"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction must be > 0 and < 1"),
        ({"early_stopping": "yes"}, TypeError, "early_stopping must be True or False"),
        ({"backend": "fortran"}, ValueError, "unknown backend"),
    ],
)
def test_bad_parameters_fail_at_fit_with_a_clear_message(params, exc, match):
    X = np.random.default_rng(0).random((20, 3))
    y = np.arange(20) % 2
    with pytest.raises(exc, match=match):
        MLPClassifier(**params).fit(X, y)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(np.ones((5, 2)), np.zeros(5))


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_early_stopping_keeps_the_best_validation_epoch(digits, Est):
    X_tr, _, y_tr, _ = digits
    X = X_tr / 16.0
    y = y_tr if Est is MLPClassifier else X[:, 36] * 2 - X[:, 20]
    est = Est(hidden_layer_sizes=(32,), early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
              tol=1e-3, max_iter=300, learning_rate_init=0.01, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)  # stops on the validation score long before max_iter
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ < 300 and est.best_loss_ is None
    assert est.best_validation_score_ == max(scores) > 0.8
    # the weights kept are the best epoch's: re-scoring the held-out part reproduces the best score
    from sklearn.model_selection import train_test_split

    Y = est._encode_targets(y, False, None)
    _, val = train_test_split(np.arange(len(X)), test_size=0.2, random_state=0,
                              stratify=Y if Est is MLPClassifier else None)
    assert est._score_encoded(X[val], Y[val] if Y.ndim == 1 else Y[val]) == pytest.approx(est.best_validation_score_)


def test_warm_start_continues_from_the_fitted_weights(digits):
    X_tr, X_te, y_tr, y_te = digits
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
    clf = MLPClassifier(hidden_layer_sizes=(24,), max_iter=5, random_state=0, warm_start=True)
    _quiet(clf.fit, X_tr, y_tr)
    model, W_after_first = clf.model_, clf.coefs_[0].copy()
    loss_first = clf.loss_curve_[-1]
    _quiet(clf.fit, X_tr, y_tr)
    assert clf.model_ is model and clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert not np.array_equal(clf.coefs_[0], W_after_first)  # trained further ...
    assert clf.loss_curve_[-1] < loss_first  # ... from where it stopped, not from scratch
    cold = _quiet(clone(clf).set_params(warm_start=False).fit, X_tr, y_tr)
    assert cold.n_iter_ == 5
    with pytest.raises(ValueError, match="not in classes_"):
        clf.fit(X_tr, np.where(y_tr == 9, 12, y_tr))
