"""The bridges against their hosts' own layers, on the course net.

Course net: 400-25-15-1, sigmoid hidden units, binary cross-entropy, plain SGD, batch 32,
n = 1000 examples (synthetic, seeded: X uniform in [-1, 1), labels from a fixed random
linear teacher, balanced), float32, CPU.

1. Inside PyTorch: the net built from ``fastface.torch.Dense`` layers vs the same net from
   ``torch.nn.Linear`` + ``torch.nn.Sigmoid``, same start, same data, same optimizer
   (``torch.optim.SGD``), same run. Time of one epoch (32 optimizer steps).
2. scikit-learn estimators: ``fastface.sklearn.MLPClassifier`` vs
   ``sklearn.neural_network.MLPClassifier`` with the same settings (solver 'sgd', momentum 0,
   alpha 0, constant learning rate, no early stopping), time per epoch of ``fit``, on float32
   input (the course net's dtype) and on float64 input (scikit-learn's usual dtype).

Compilation is excluded (one warm-up run first); each result is checked (the two PyTorch nets
reach the same weights; both estimators learn the task) before it is timed.

Run as a script (one line per configuration, with ratios)::

    python benches/bench_bridges.py [--epochs 20] [--repeats 5]

or through pytest-benchmark::

    python -m pytest benches/bench_bridges.py
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import best_of, print_blas  # noqa: E402

SIZES = (400, 25, 15, 1)
N, BATCH, LR = 1000, 32, 0.5


def course_data(n=N, dtype=np.float32, seed=0):
    """X (n, 400) uniform [-1, 1), y (n,) in {0, 1} from a fixed random linear teacher."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, SIZES[0])).astype(dtype)
    teacher = rng.standard_normal(SIZES[0])
    score = X @ teacher
    y = (score > np.median(score)).astype(dtype)
    return X, y


# --- 1. inside PyTorch ----------------------------------------------------------------------
def torch_nets(seed=0):
    """(reference nn.Linear net, fastface.torch.Dense net) with identical starting weights."""
    import torch

    import fastface.torch as fft

    torch.manual_seed(seed)
    lins = [torch.nn.Linear(i, o) for i, o in zip(SIZES[:-1], SIZES[1:])]
    ref = torch.nn.Sequential(lins[0], torch.nn.Sigmoid(), lins[1], torch.nn.Sigmoid(), lins[2])
    ours = torch.nn.Sequential(
        fft.Dense.from_linear(lins[0], "sigmoid"),
        fft.Dense.from_linear(lins[1], "sigmoid"),
        fft.Dense.from_linear(lins[2]),  # logits; the sigmoid is fused into the loss in both
    )
    return ref, ours


def torch_trainer(net, X, y):
    """A function running one epoch of SGD (batch 32, in order) on `net`."""
    import torch

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch():
        for i in range(0, len(Xt), BATCH):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[i:i + BATCH]), yt[i:i + BATCH])
            loss.backward()
            opt.step()
        return loss.item()

    return epoch


def check_torch_same_weights(ref, ours):
    import torch

    lins = [m for m in ref if isinstance(m, torch.nn.Linear)]
    worst = max(
        max((d.weight - l.weight.T).abs().max().item(), (d.bias - l.bias).abs().max().item())
        for l, d in zip(lins, ours)
    )
    if worst > 1e-3:
        raise AssertionError(f"fastface.torch and nn.Linear nets diverged: max |dW| = {worst:.2e}")
    return worst


def bench_torch(epochs=20, repeats=5):
    X, y = course_data()
    ref, ours = torch_nets()
    run_ref, run_ours = torch_trainer(ref, X, y), torch_trainer(ours, X, y)
    run_ref(), run_ours()  # warm-up (numba compilation, torch's first-call costs)
    check_torch_same_weights(ref, ours)
    res = {}
    for name, run in (("torch nn.Linear", run_ref), ("torch fastface.Dense", run_ours)):
        best, med = best_of(lambda: [run() for _ in range(epochs)], repeats)
        res[name] = (best / epochs, med / epochs)
    worst = check_torch_same_weights(ref, ours)
    return res, worst


# --- 2. scikit-learn estimators ----------------------------------------------------------------
def sklearn_estimators(max_iter, seed=0):
    """(scikit-learn's MLPClassifier, fastface.sklearn.MLPClassifier) with the same settings."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastface.sklearn import MLPClassifier as FfMLP

    common = dict(
        hidden_layer_sizes=SIZES[1:-1], activation="logistic", solver="sgd", alpha=0.0,
        batch_size=BATCH, learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False,
        max_iter=max_iter, shuffle=True, tol=0.0, n_iter_no_change=max_iter + 1,
        random_state=seed,
    )
    return SkMLP(learning_rate="constant", **common), FfMLP(**common)


def bench_sklearn(epochs=20, repeats=5, dtype=np.float32):
    """Per-epoch fit times of both estimators on the course data in `dtype` (both estimators
    train in the dtype of their input: scikit-learn's keeps float32, fastface's dtype=None too)."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = course_data(dtype=dtype)
    res, acc = {}, {}
    for warm in (True, False):
        sk, ff = sklearn_estimators(max_iter=2 if warm else epochs)
        for name, est in (("sklearn MLPClassifier", sk), ("fastface.sklearn MLPClassifier", ff)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                if warm:
                    est.fit(X, y)  # compilation, imports
                    continue
                best, med = best_of(lambda: est.fit(X, y), repeats)
            if est.n_iter_ != epochs:
                raise AssertionError(f"{name} ran {est.n_iter_} epochs, expected {epochs}")
            res[name] = (best / epochs, med / epochs)
            acc[name] = est.score(X, y)
    for name, a in acc.items():
        if a < 0.8:
            raise AssertionError(f"{name} did not learn the task: training accuracy {a:.3f}")
    return res, acc


# --- pytest-benchmark entry points ------------------------------------------------------------
def _pytest_torch_epoch(benchmark, which):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's default (--torch-threads 1)
    try:
        X, y = course_data()
        ref, ours = torch_nets()
        run = torch_trainer(ours if which == "fastface" else ref, X, y)
        run()
        loss = benchmark(run)
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(loss)


def test_torch_epoch_nn_linear(benchmark):
    _pytest_torch_epoch(benchmark, "torch")


def test_torch_epoch_fastface_dense(benchmark):
    _pytest_torch_epoch(benchmark, "fastface")


def _pytest_sklearn_fit(benchmark, which, epochs=10):
    X, y = course_data()
    sk, ff = sklearn_estimators(max_iter=epochs)
    est = ff if which == "fastface" else sk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
        benchmark(est.fit, X, y)
    assert est.score(X, y) > 0.8


def test_sklearn_fit_10_epochs_sklearn(benchmark):
    _pytest_sklearn_fit(benchmark, "sklearn")


def test_sklearn_fit_10_epochs_fastface(benchmark):
    _pytest_sklearn_fit(benchmark, "fastface")


# --- script --------------------------------------------------------------------------------------
def _report(title, res, base, extra=lambda name: ""):
    print(title)
    ref_best = res[base][0]
    for name, (best, med) in res.items():
        print(
            f"  {name:32s} epoch best {best * 1e3:8.3f} ms  median {med * 1e3:8.3f} ms  "
            f"speed-up vs {base}: {ref_best / best:6.2f}x{extra(name)}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (best and median shown)")
    parser.add_argument("--only", choices=["torch", "sklearn"], help="run one half")
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch.set_num_threads for the PyTorch half (default 1: at batch 32 more threads only "
        "add synchronisation, and on a shared machine they make PyTorch's times erratic)",
    )
    parser.add_argument(
        "--blas-threads", type=int, default=None,
        help="limit the BLAS thread pools (threadpoolctl) for the whole run; default: as installed",
    )
    args = parser.parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    print(f"course net {'-'.join(map(str, SIZES))} sigmoid, BCE, SGD lr {LR}, batch {BATCH}, "
          f"n={N}, float32, CPU; {args.epochs} epochs x {args.repeats} runs; BLAS threads "
          f"{args.blas_threads if args.blas_threads is not None else 'as installed'}")
    print_blas()
    if args.only in (None, "torch"):
        try:
            import torch
        except ImportError:
            print("  PyTorch: not installed (pip install fastface[torch]); skipped")
        else:
            torch.set_num_threads(args.torch_threads)
            res, worst = bench_torch(args.epochs, args.repeats)
            _report(f"inside PyTorch {torch.__version__} ({torch.get_num_threads()} threads); "
                    f"weights agree to {worst:.1e}", res, "torch nn.Linear")
    if args.only in (None, "sklearn"):
        try:
            import sklearn
        except ImportError:
            print("  scikit-learn: not installed; skipped")
        else:
            for dtype in (np.float32, np.float64):
                res, acc = bench_sklearn(args.epochs, args.repeats, dtype)
                _report(f"scikit-learn {sklearn.__version__} estimators (fit, per epoch), X "
                        f"{np.dtype(dtype).name}", res, "sklearn MLPClassifier",
                        lambda name: f"  train acc {acc[name]:.3f}")


if __name__ == "__main__":
    main()
