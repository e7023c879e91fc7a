"""Training callbacks (Keras-like): a base class, EarlyStopping, and the progress printers.

A callback gets ``set_model(model)`` then ``on_train_begin(logs)``, ``on_epoch_begin(epoch,
logs)``, ``on_epoch_end(epoch, logs)`` (logs holds this epoch's ``loss``, ``accuracy``,
``val_loss``, ``val_accuracy`` as present) and ``on_train_end(logs)``. Setting
``model.stop_training = True`` ends ``fit`` after the current epoch.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

__all__ = ["Callback", "EarlyStopping", "ProgressBar"]


class Callback:
    """Base class: every hook does nothing."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    mode: 'min', 'max' or 'auto' (max for names containing 'acc', min otherwise).
    restore_best_weights: at the end of training, put back the weights of the best epoch.
    After training, ``stopped_epoch`` (0-based, or None) and ``best_epoch`` say what happened.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping: monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0; got {patience!r}")
        try:
            min_delta = abs(float(min_delta))
        except (TypeError, ValueError):
            raise TypeError(f"EarlyStopping: min_delta must be a number; got {min_delta!r}") from None
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max'; got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = patience
        self.mode = mode
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._reset()

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not among this fit's metrics "
                f"{sorted(logs)}; pick one of those (val_* needs validation_split or validation_data)"
            )
        value = float(logs[self.monitor])
        if self._improved(value) or self.best_epoch is None:
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _format_logs(logs) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressBar(Callback):
    """verbose=1: a tqdm bar over the epochs (epoch, loss, metrics, rate) when tqdm is
    importable, else one printed line per epoch. verbose=2: always one line per epoch.
    desc: a label in front of the bar or of each line (which of several trainings this is)."""

    def __init__(self, epochs: int, n_samples: int, verbose: int = 1, stream=None, desc=None):
        self.epochs = epochs
        self.desc = desc
        self.n_samples = n_samples
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._t0 = 0.0
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._bar = tqdm(total=epochs, unit="epoch", file=self.stream, leave=True, dynamic_ncols=True,
                                     desc=desc)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        logs = logs or {}
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self._bar.update(1)
            return
        rate = self.n_samples / dt if dt > 0 else float("inf")
        print(
            (f"{self.desc}: " if self.desc else "") + f"Epoch {epoch + 1}/{self.epochs} - {dt:.3f}s - {rate:,.0f} samples/s - {_format_logs(logs)}",
            file=self.stream,
            flush=True,
        )

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
