"""Optimizers: SGD (momentum, Nesterov) and Adam, with L2 weight decay.

They work on a model's *flat* parameter vector theta (P,) and its gradient grad (P,) (every
layer's W then b, see fastface._fused); the update itself is one compiled loop
(:func:`fastface._fused.update`) shared by the fused and the per-layer training paths.

Update formulas (PyTorch's, so a cross-check against ``torch.optim`` matches step for step):

    g = dL/dp + weight_decay * p            (W only; biases are not decayed)
    SGD:   buf = momentum * buf + g         (when momentum > 0; buf starts at 0)
           g   = g + momentum * buf  if nesterov else buf
           p  -= learning_rate * g
    Adam:  m = beta_1 m + (1 - beta_1) g ;  v = beta_2 v + (1 - beta_2) g^2 ;  t += 1
           p -= learning_rate / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)

With a constant learning rate the SGD form equals Keras's ``v = momentum v - lr g; p += v``.
An optimizer object keeps its state (buffers and step count) between ``fit`` calls, so repeated
fits continue training, as in Keras. ``get_config()`` / ``from_config()`` round-trip through JSON.
"""

from __future__ import annotations

import math

import numpy as np

from . import _fused

__all__ = ["Optimizer", "SGD", "Adam", "get", "OPTIMIZERS"]


def _positive(name, value, allow_zero=False, upper=None):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0) and (upper is None or v < upper)
    if not ok:
        rng = ">= 0" if allow_zero else "> 0"
        if upper is not None:
            rng += f" and < {upper}"
        raise ValueError(f"{name} must be finite and {rng}; got {value!r}")
    return v


class Optimizer:
    """Base class: hyperparameters, flat state buffers, and the compiled update."""

    name = ""
    code = -1

    def __init__(self, learning_rate, weight_decay=0.0):
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.s1 = None
        self.s2 = None
        self.t = np.zeros(1, dtype=np.int64)

    @property
    def iterations(self) -> int:
        """Number of update steps taken so far."""
        return int(self.t[0])

    def hyper(self, dtype=np.float64) -> np.ndarray:
        """The hyperparameters as the (N_HYPER,) array of `dtype` the compiled update reads."""
        h = np.zeros(_fused.N_HYPER, dtype=np.float64)
        self._fill(h)
        h[_fused.H_C1] = 1.0 - h[_fused.H_BETA1]
        h[_fused.H_C2] = 1.0 - h[_fused.H_BETA2]
        return h.astype(dtype)

    def _fill(self, h) -> None:
        h[_fused.H_LR] = self.learning_rate
        h[_fused.H_WD] = self.weight_decay

    def build(self, n_params: int, dtype) -> None:
        """Allocate (or keep, when already the right size) the state buffers (P,)."""
        dtype = np.dtype(dtype)
        if self.s1 is None or self.s1.shape != (n_params,) or self.s1.dtype != dtype:
            self.s1 = np.zeros(n_params, dtype=dtype)
            self.s2 = np.zeros(n_params, dtype=dtype)
            self.t[0] = 0

    def reset(self) -> None:
        """Forget the state (buffers and step count)."""
        if self.s1 is not None:
            self.s1[:] = 0
            self.s2[:] = 0
        self.t[0] = 0

    def step(self, theta: np.ndarray, grad: np.ndarray, table: np.ndarray) -> bool:
        """Update theta (P,) in place from grad (P,); table is the model's layer table.

        Returns False when some update overflowed (those weights keep their old value).
        """
        self.build(theta.shape[0], theta.dtype)
        return _fused.update(theta, grad, self.s1, self.s2, table, self.code, self.hyper(theta.dtype), self.t)

    def get_config(self) -> dict:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    name = "sgd"
    code = _fused.OPT_CODES["sgd"]

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = _positive("momentum", momentum, allow_zero=True, upper=1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0. Set momentum=0.9, say")
        self.nesterov = bool(nesterov)

    def _fill(self, h):
        super()._fill(h)
        h[_fused.H_MOMENTUM] = self.momentum
        h[_fused.H_NESTEROV] = 1.0 if self.nesterov else 0.0

    def get_config(self):
        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction and L2 weight decay (PyTorch's formulation)."""

    name = "adam"
    code = _fused.OPT_CODES["adam"]

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = _positive("beta_1", beta_1, allow_zero=True, upper=1.0)
        self.beta_2 = _positive("beta_2", beta_2, allow_zero=True, upper=1.0)
        self.epsilon = _positive("epsilon", epsilon)

    def _fill(self, h):
        super()._fill(h)
        h[_fused.H_BETA1] = self.beta_1
        h[_fused.H_BETA2] = self.beta_2
        h[_fused.H_EPS] = self.epsilon

    def get_config(self):
        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "weight_decay": self.weight_decay,
        }


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(optimizer, **kwargs) -> Optimizer:
    """An optimizer from a name ('sgd' | 'adam') and keyword hyperparameters, or the object itself.

    Keyword arguments that are None are left at the optimizer's defaults.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise ValueError(
                f"compile: got an optimizer object and also {sorted(kwargs)}; set those on the "
                f"object instead, e.g. {type(optimizer).__name__}(learning_rate=...)"
            )
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZERS)} or an "
            "optimizer object such as fastface.optim.Adam(learning_rate=1e-3)"
        )
    cls = OPTIMIZERS[optimizer.lower()]
    if cls is Adam:
        for key in ("momentum", "nesterov"):
            value = kwargs.pop(key, None)
            if value not in (None, 0, 0.0, False):
                raise ValueError(f"{key}={value!r} applies to SGD only; Adam has beta_1/beta_2")
    return cls(**kwargs)


def from_config(config: dict) -> Optimizer:
    """Rebuild an optimizer from :meth:`Optimizer.get_config`."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} in the config; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](**config)
