"""fastface as scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (same parameter names,
same fitted attributes), trained by :class:`fastface.model.Sequential` -- on its fused path
(a whole epoch in one compiled call) whenever the net fits in cache, which is the case for
the small nets these estimators are meant for. They pass
``sklearn.utils.estimator_checks.check_estimator`` (see SKIPPED_CHECKS) and work in
``Pipeline``, ``GridSearchCV`` and ``CalibratedClassifierCV``::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from fastface.sklearn import MLPClassifier
    clf = make_pipeline(MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(25, 15), max_iter=50))
    clf.fit(X_train, y_train).score(X_test, y_test)

Shapes: X (N, n_features); y (N,) labels (classifier: any hashable labels; a 2-D 0/1 indicator
array means multilabel), or (N,) / (N, n_outputs) targets (regressor). coefs_[i] is
(n_in, n_out) and intercepts_[i] (n_out,), as scikit-learn names them; they are views of the
model's own parameters (``model_``).

Parameters as scikit-learn's (``hidden_layer_sizes``, ``activation`` in 'identity' |
'logistic' | 'tanh' | 'relu' -- fastface's 'linear' / 'sigmoid' are accepted too --,
``solver`` 'sgd' | 'adam', ``alpha``, ``batch_size``, ``learning_rate`` 'constant' |
'adaptive', ``learning_rate_init``, ``max_iter``, ``shuffle``, ``random_state``, ``tol``,
``verbose``, ``warm_start``, ``momentum``, ``nesterovs_momentum``, ``beta_1``, ``beta_2``,
``epsilon``, ``n_iter_no_change``, ``early_stopping``, ``validation_fraction``) plus two of
fastface's:

- ``dtype``: None (float32 input trains in float32, anything else in float64, as scikit-learn
  does), 'float32' or 'float64';
- ``backend``: None (fastface's choice; the fused path) or a fastface backend name (that
  backend's per-layer kernels).

Differences from scikit-learn, on purpose:
- the output layers and losses are fastface's: one sigmoid unit + binary cross-entropy for two
  classes, softmax + categorical cross-entropy for more, sigmoid units + binary cross-entropy
  (mean over every output, as Keras) for multilabel, identity + mean squared error (without
  scikit-learn's 1/2) for regression;
- ``alpha`` is the L2 penalty of scikit-learn, ``alpha / (2 * batch) * ||W||^2`` per batch:
  it is passed to fastface's optimizers as ``weight_decay = alpha / batch_size``;
- weights start from fastface's Glorot-uniform initialisation, biases at zero;
- early_stopping holds out validation_fraction of the examples (stratified for classes), stops
  on the validation score (accuracy / R^2) as scikit-learn does and keeps the best epoch's
  weights; partial_fit ignores it;
- not supported: solver 'lbfgs', learning_rate 'invscaling', sparse X (refused with a
  TypeError; densify it first).
- predictions follow fastface's rule ``p >= 0.5`` for sigmoid outputs.

SKIPPED_CHECKS lists the scikit-learn estimator checks these estimators do not pass, each with
its reason.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from . import ops, optim
from .activations import ACTIVATIONS
from .callbacks import Callback
from .model import Dense, Sequential, load_model

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _sk_validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


__all__ = ["MLPClassifier", "MLPRegressor", "SKIPPED_CHECKS"]

# scikit-learn's activation names -> fastface's (fastface's own names are accepted as well)
ACTIVATION_NAMES = {
    "identity": "linear",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "linear": "linear",
    "sigmoid": "sigmoid",
}
SOLVERS = ("sgd", "adam")
_CLASSIFICATION_TARGETS = ("binary", "multiclass", "multilabel-indicator")
LEARNING_RATES = ("constant", "adaptive")

# check name -> reason; used by tests/test_sklearn_bridge.py (parametrize_with_checks).
SKIPPED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch SGD/Adam: giving an example weight 0 is not the same as removing it, since "
        "the batches are cut differently (scikit-learn's own MLP passes it only with lbfgs, "
        "which fastface does not have)"
    ),
}


class _Convergence(Callback):
    """Feeds each epoch's loss to the estimator; stops fit as scikit-learn's MLP does."""

    def __init__(self, estimator):
        self.estimator = estimator

    def on_epoch_end(self, epoch, logs=None):
        if self.estimator._after_epoch(float(logs["loss"])):
            self.model.stop_training = True


def _check_param(name, value, kind, low=None, high=None, low_open=False, high_open=False):
    """Raise ValueError/TypeError unless `value` is a number of `kind` within the bounds."""
    ok_type = (numbers.Integral,) if kind == "int" else (numbers.Real,)
    if isinstance(value, bool) or not isinstance(value, ok_type) or value != value:
        raise TypeError(f"{name} must be {'an int' if kind == 'int' else 'a real number'}; got {value!r}")
    bad = (
        (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}; got {value!r}")


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the model, the training loop."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        dtype=None,
        backend=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.backend = backend

    # --- parameters ---------------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(
                f"hidden_layer_sizes must be an int or a sequence of ints; got {self.hidden_layer_sizes!r}"
            ) from None
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}")
        return [int(s) for s in sizes]

    def _validate_params(self):
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATION_NAMES)}; got {self.activation!r}"
            )
        if self.solver not in SOLVERS:
            raise ValueError(
                f"solver must be one of {list(SOLVERS)} (fastface has no 'lbfgs'); got {self.solver!r}"
            )
        if self.learning_rate not in LEARNING_RATES:
            raise ValueError(
                f"learning_rate must be one of {list(LEARNING_RATES)} ('invscaling' is not "
                f"supported); got {self.learning_rate!r}"
            )
        _check_param("alpha", self.alpha, "real", 0)
        _check_param("learning_rate_init", self.learning_rate_init, "real", 0, low_open=True)
        _check_param("max_iter", self.max_iter, "int", 1)
        _check_param("tol", self.tol, "real", 0)
        _check_param("momentum", self.momentum, "real", 0, 1, high_open=True)
        _check_param("beta_1", self.beta_1, "real", 0, 1, high_open=True)
        _check_param("beta_2", self.beta_2, "real", 0, 1, high_open=True)
        _check_param("epsilon", self.epsilon, "real", 0, low_open=True)
        _check_param("n_iter_no_change", self.n_iter_no_change, "int", 1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_param("batch_size", self.batch_size, "int", 1)
        _check_param("validation_fraction", self.validation_fraction, "real", 0, 1, True, True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.dtype is not None:
            try:
                ok = np.dtype(self.dtype) in (np.float32, np.float64)
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"dtype must be None, 'float32' or 'float64'; got {self.dtype!r}")
        return self._hidden_sizes()

    def _batch(self, n_samples):
        if isinstance(self.batch_size, str):
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                f"Got `batch_size` larger than the sample size ({n_samples}); it is clipped to {n_samples}"
            )
        return int(min(self.batch_size, n_samples))

    def _optimizer(self, batch):
        weight_decay = float(self.alpha) / batch
        if self.solver == "sgd":
            return optim.SGD(
                learning_rate=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                weight_decay=weight_decay,
            )
        return optim.Adam(
            learning_rate=self.learning_rate_init, beta_1=self.beta_1, beta_2=self.beta_2,
            epsilon=self.epsilon, weight_decay=weight_decay,
        )

    def _seed(self):
        rs = self.random_state
        if rs is None:
            return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            return int(rs) & 0x7FFFFFFF
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(0, 2**31 - 1))
        raise TypeError(f"random_state must be None, an int or a NumPy RandomState/Generator; got {rs!r}")

    def _X_dtype(self, X):
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    # --- training -----------------------------------------------------------------------------
    def _build(self, hidden, n_features, n_outputs, dtype):
        layers = [Dense(h, ACTIVATION_NAMES[self.activation]) for h in hidden]
        layers.append(Dense(n_outputs, self._out_activation))
        self.model_ = Sequential(
            layers, input_dim=n_features, dtype=dtype, backend=self.backend, seed=self._seed()
        )
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self._no_improvement_count = 0
        self._lr = float(self.learning_rate_init)
        self._bind_attributes()

    def _compile(self, batch):
        opt = self._optimizer(batch)
        opt.learning_rate = self._lr
        self.model_.compile(loss=self._loss, optimizer=opt)
        self._batch_used = batch

    def _after_epoch(self, loss):
        """Record one epoch; True when training should stop (scikit-learn's rule)."""
        if self.alpha:
            sq = sum(float(np.dot(layer.W.ravel(), layer.W.ravel())) for layer in self.model_.layers)
            loss += 0.5 * float(self.alpha) * sq / self._batch_used
        self.n_iter_ += 1
        self.t_ += self._n_seen
        self.loss_curve_.append(loss)
        self.loss_ = loss
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        if not self._converging:
            self.best_loss_ = loss if self.best_loss_ is None else min(self.best_loss_, loss)
            return False
        if self._validation is not None:
            score = self._score_encoded(*self._validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.model_.get_weights()
        else:
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss
        if self._no_improvement_count > self.n_iter_no_change:
            if self.learning_rate == "adaptive" and self._lr / 5.0 > 1e-6:
                self._lr /= 5.0
                self.model_.optimizer.learning_rate = self._lr
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"Setting learning rate to {self._lr:f}")
                return False
            if self.verbose:
                what = "Validation score" if self._validation is not None else "Training loss"
                print(
                    f"{what} did not improve more than tol={self.tol} for "
                    f"{self.n_iter_no_change} consecutive epochs. Stopping."
                )
            self._stopped = True
            return True
        return False

    def _train(self, X, Y, sample_weight, epochs, converging, validation=None):
        self._n_seen = X.shape[0]
        self._converging = converging
        self._stopped = False
        self._validation = validation
        self.model_.fit(
            X, Y, epochs=epochs, batch_size=self._batch_used, shuffle=bool(self.shuffle),
            sample_weight=sample_weight, verbose=0, callbacks=[_Convergence(self)],
        )
        self._bind_attributes()

    def _bind_attributes(self):
        m = self.model_
        self.coefs_ = [layer.W for layer in m.layers]
        self.intercepts_ = [layer.b for layer in m.layers]
        self.n_layers_ = len(m.layers) + 1
        self.n_outputs_ = m.layers[-1].units
        self.out_activation_ = {"sigmoid": "logistic", "softmax": "softmax", "linear": "identity"}[
            self._out_activation
        ]

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        hidden = self._validate_params()
        fresh = not hasattr(self, "model_") or not (self.warm_start or incremental)
        X, y = self._validate_xy(X, y, reset=fresh)
        sample_weight = _check_sample_weight(sample_weight, X.shape[0])
        Y = self._encode_targets(y, fresh, classes)
        n_outputs = self._n_outputs
        if fresh:
            self._build(hidden, X.shape[1], n_outputs, self._X_dtype(X))
            self._compile(self._batch(X.shape[0]))
        else:
            if self.model_.layers[-1].units != n_outputs:
                raise ValueError(
                    f"{type(self).__name__}: the model has {self.model_.layers[-1].units} outputs but "
                    f"y needs {n_outputs}; fit again with warm_start=False"
                )
            if not incremental:  # warm start: new optimizer, as scikit-learn does
                self._lr = float(self.learning_rate_init)
                if self.best_loss_ is None:  # the previous fit used early stopping
                    self.best_loss_ = np.inf
                self._compile(self._batch(X.shape[0]))
        if incremental:
            self._train(X, Y, sample_weight, epochs=1, converging=False)
        else:
            validation = None
            if self.early_stopping:
                X, Y, sample_weight, validation = self._split_validation(X, Y, sample_weight)
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self._best_weights = self.model_.get_weights()
            self._train(X, Y, sample_weight, epochs=int(self.max_iter), converging=True,
                        validation=validation)
            self._validation = None
            if self.early_stopping:  # keep the weights of the best validation score
                self.model_.set_weights(self._best_weights)
                del self._best_weights
                self.best_loss_ = None
            if not self._stopped:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                )
        return self

    def _split_validation(self, X, Y, sample_weight):
        """Hold out validation_fraction of the examples (stratified for single-label classes)."""
        from sklearn.model_selection import train_test_split

        stratify = Y if (self._stratify and Y.ndim == 1) else None
        seed = self._seed() if self.random_state is not None else None
        try:
            try:
                train, val = train_test_split(
                    np.arange(X.shape[0]), test_size=self.validation_fraction, random_state=seed,
                    stratify=stratify,
                )
            except ValueError:
                if stratify is None:
                    raise
                # too few examples of some class to stratify: a plain random split instead
                train, val = train_test_split(
                    np.arange(X.shape[0]), test_size=self.validation_fraction, random_state=seed
                )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping: cannot hold out validation_fraction={self.validation_fraction} "
                f"of {X.shape[0]} examples ({exc}); give more examples, a larger "
                "validation_fraction, or early_stopping=False"
            ) from None
        sw = None if sample_weight is None else sample_weight[train]
        return X[train], Y[train], sw, (X[val], Y[val])

    def _logits_arrays(self, X):
        m = self.model_
        a = m.transform_inputs(X)
        for layer in m.layers[:-1]:
            a = ops.dense_forward(a, layer.W, layer.b, layer.activation, backend=m.backend)
        last = m.layers[-1]
        return ops.dense_forward(a, last.W, last.b, "linear", backend=m.backend)

    def _validate_xy(self, X, y, reset):
        return _sk_validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], multi_output=True,
            y_numeric=self._y_numeric,
        )

    # --- inference ----------------------------------------------------------------------------
    def _logits(self, X):
        """Pre-activation of the output layer, (N, n_outputs), in the model's dtype."""
        check_is_fitted(self)
        X = _sk_validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._logits_arrays(X)

    # --- pickling: the model travels as fastface's own file format (no pickle inside) ----------
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may return __dict__
        model = state.pop("model_", None)
        if model is not None:
            state.pop("coefs_", None)
            state.pop("intercepts_", None)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.npz")
                model.save(path)
                with open(path, "rb") as fh:
                    state["_model_npz"] = fh.read()
        return state

    def __setstate__(self, state):
        blob = state.pop("_model_npz", None)
        super().__setstate__(state)
        if blob is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.npz")
                with open(path, "wb") as fh:
                    fh.write(blob)
                self.model_ = load_model(path)
            self._bind_attributes()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastface (scikit-learn API).

    See the module docstring for the parameters. Fitted attributes: ``classes_``,
    ``coefs_``, ``intercepts_``, ``n_iter_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``t_``, ``n_features_in_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``,
    ``validation_scores_`` and ``best_validation_score_`` (with early_stopping) and ``model_``
    (the fastface Sequential).

    Two classes: one sigmoid output, ``predict`` gives ``classes_[1]`` where ``p >= 0.5``,
    ``decision_function`` the logit (N,). More: softmax, ``decision_function`` the logits
    (N, n_classes). A 2-D 0/1 ``y`` trains a multilabel net (one sigmoid unit per label).
    """

    _y_numeric = False
    _stratify = True

    def _score_encoded(self, X, Y):
        """Accuracy on encoded targets (0/1, class indices, or an indicator matrix)."""
        z = self._logits_arrays(X).astype(np.float64)
        if self._multilabel:
            return float(np.mean(np.all((ACTIVATIONS["sigmoid"](z) >= 0.5) == (Y >= 0.5), axis=1)))
        if z.shape[1] == 1:
            return float(np.mean((ACTIVATIONS["sigmoid"](z[:, 0]) >= 0.5) == (Y >= 0.5)))
        return float(np.mean(np.argmax(z, axis=1) == Y))

    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y); ``classes`` (every label) is required on the first call."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit (every label that y "
                "may ever contain, e.g. classes=np.unique(y_all))"
            )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _encode_targets(self, y, fresh, classes):
        # type_of_target once (it is the slow part of scikit-learn's label helpers)
        y_type = type_of_target(y, input_name="y")
        if y_type not in _CLASSIFICATION_TARGETS:
            raise ValueError(
                f"Unknown label type: {y_type}. Maybe you are trying to fit a classifier, which "
                "expects discrete classes on a regression target with continuous values. "
                "Use MLPRegressor for continuous targets"
            )
        y = np.asarray(y)
        multilabel = y_type == "multilabel-indicator"
        if fresh or not hasattr(self, "_multilabel"):
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
            else:
                self.classes_ = np.unique(y if classes is None else np.asarray(classes))
                if len(self.classes_) < 2:
                    raise ValueError(
                        f"{type(self).__name__} needs at least 2 classes in y; got 1 class "
                        f"({self.classes_[0]!r}). Give examples of every class"
                    )
            self._multilabel = multilabel
        else:
            if multilabel != self._multilabel:
                raise ValueError(
                    f"y is {'multilabel' if multilabel else 'single-label'} but the estimator was "
                    f"first fitted on {'multilabel' if self._multilabel else 'single-label'} targets; "
                    "fit again with warm_start=False"
                )
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"classes={np.unique(classes)!r} differs from the classes of the first call "
                    f"{self.classes_!r}; pass the same classes every time"
                )
            if not multilabel:
                seen = np.unique(y)
                unknown = seen[~np.isin(seen, self.classes_)]
                if unknown.size:
                    raise ValueError(
                        f"y holds labels {unknown.tolist()} that are not in classes_ "
                        f"{self.classes_.tolist()}; give every label in the first call's classes "
                        "(or refit with warm_start=False)"
                    )
        if multilabel:
            self._n_outputs = int(y.shape[1])
            self._out_activation, self._loss = "sigmoid", "binary_crossentropy"
            return y.astype(np.float64)
        if len(self.classes_) == 2:
            self._n_outputs = 1
            self._out_activation, self._loss = "sigmoid", "binary_crossentropy"
            return (y.ravel() == self.classes_[1]).astype(np.float64)
        self._n_outputs = len(self.classes_)
        self._out_activation, self._loss = "softmax", "categorical_crossentropy"
        return np.searchsorted(self.classes_, y.ravel())

    def _validate_xy(self, X, y, reset):
        X, y = super()._validate_xy(X, y, reset)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the "
                "shape of y to (n_samples, ), for example using ravel().",
                _data_conversion_warning(),
            )
            y = y.ravel()
        return X, y

    def decision_function(self, X):
        """Logits: (N,) for two classes, (N, n_outputs) otherwise; float64."""
        z = self._logits(X).astype(np.float64)
        return z[:, 0] if z.shape[1] == 1 and not self._multilabel else z

    def predict_proba(self, X):
        """Probabilities (N, n_classes) (rows sum to 1), or (N, n_labels) for multilabel."""
        z = self._logits(X).astype(np.float64)
        p = ACTIVATIONS[self._out_activation](z)
        if self._multilabel:
            return p
        if p.shape[1] == 1:
            return np.hstack([1.0 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """log of predict_proba."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Labels (N,) from classes_, or a 0/1 indicator (N, n_labels) for multilabel."""
        z = self._logits(X).astype(np.float64)
        if self._multilabel:
            return (ACTIVATIONS["sigmoid"](z) >= 0.5).astype(np.int64)
        if z.shape[1] == 1:
            return self.classes_[(ACTIVATIONS["sigmoid"](z[:, 0]) >= 0.5).astype(np.intp)]
        return self.classes_[np.argmax(z, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(MultiOutputMixin, RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastface (scikit-learn API).

    Identity output, mean squared error. y (N,) gives predictions (N,); y (N, k) gives (N, k).
    Fitted attributes as MLPClassifier's, without classes_.
    """

    _y_numeric = True
    _stratify = False

    def _score_encoded(self, X, Y):
        """R^2 (averaged over outputs), as ``score``."""
        from sklearn.metrics import r2_score

        return float(r2_score(Y, self._logits_arrays(X).astype(np.float64)))
    _out_activation = "linear"
    _loss = "mse"

    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode_targets(self, y, fresh, classes):
        y = np.asarray(y)
        self._n_outputs = 1 if y.ndim == 1 else y.shape[1]
        return y.reshape(len(y), self._n_outputs)

    def predict(self, X):
        """Predictions (N,) when fitted on a 1-D y, else (N, n_outputs)."""
        z = self._logits(X).astype(np.float64)
        return z[:, 0] if z.shape[1] == 1 else z


def _check_sample_weight(sample_weight, n):
    """None, a number or an array-like (n,) of finite weights >= 0, not all zero -> (n,) or None."""
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers; got dtype {sw.dtype}")
    sw = sw.astype(np.float64)
    if sw.ndim == 0:
        sw = np.full(n, float(sw))
    if sw.shape != (n,):
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n},): one weight per example")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight must be finite and >= 0 (negative values or NaN/inf found)")
    if not np.any(sw > 0):
        raise ValueError("Sample weights must contain at least one non-zero number (all weights are zero)")
    return sw


def _data_conversion_warning():
    from sklearn.exceptions import DataConversionWarning

    return DataConversionWarning
