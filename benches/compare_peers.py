"""fastface vs PyTorch (CPU, eager) vs scikit-learn's MLPClassifier, in one run.

    python benches/compare_peers.py [--quick] [--repeats R]

Configurations (issue 3):
  course  400-25-15-1 sigmoid, BCE, SGD lr 0.1, batch 32, n = 1000, float32   (epoch time)
  wide    4096-1024-512-40 relu/softmax, CCE, SGD lr 0.01, batch 128, n = 2048  (epoch time)
  predict one example through the course net                                   (latency)

Every framework trains the same architecture on the same data (uniform 0..1 inputs, labels
from a fixed random linear rule) with the same batch size and optimizer; compilation and
first-call costs are excluded (one warm-up run each); the contenders' runs are interleaved
(fastface, torch, sklearn, fastface, ...) so each sees the same machine load; a run is k
epochs (course k = 5: fastface.fit(epochs=5), five torch epoch loops, five sklearn
partial_fit calls; wide k = 1) and each one's epoch time is the best of its R runs / k (the machine is shared; the best is the
least disturbed; predict latency: the best of 100 chunks of 200 calls). Threads are
treated alike: PyTorch is timed at its default thread count and at 1 thread, fastface at its
defaults, limited to 1 thread and given 2 (Numba's threads, config.FUSED_WORKERS, which runs
the course net's fused epoch on two workers, fastface._fused_pair, and BLAS's through
threadpoolctl when installed); each side's faster setting is the one compared.
Results are checked: every framework's training loss must stay finite (and is printed), and fastface's
predictions must match a plain NumPy forward pass. Absent peers are reported, not fatal.

Prints one line per framework and configuration, with the ratio peer_time / fastface_time
(> 1 means fastface is faster), then the targets: course epoch >= 20x PyTorch and >= 10x
scikit-learn, wide epoch >= 1.0x PyTorch, one-example predict <= 5 us.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
import warnings

import numpy as np

import _machine
import fastface as ff
from fastface import _fused_pair

# k: epochs per timed run (each contender's time is per epoch: run time / k)
COURSE = dict(name="course", sizes=(400, 25, 15, 1), hidden="sigmoid", n=1000, batch=32, lr=0.1, k=5)
WIDE = dict(name="wide", sizes=(4096, 1024, 512, 40), hidden="relu", n=2048, batch=128, lr=0.01, k=1)


def make_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    IN, OUT = cfg["sizes"][0], cfg["sizes"][-1]
    X = rng.random((cfg["n"], IN), dtype=np.float32)
    proj = rng.normal(size=(IN, max(OUT, 2))).astype(np.float32)
    scores = (X - 0.5) @ proj
    y = (scores[:, 0] > 0).astype(np.int64) if OUT == 1 else scores.argmax(axis=1)
    return X, y


def best_of(fn, repeats):
    """Fastest wall-clock seconds of `repeats` calls of fn()."""
    return _machine.best_of(fn, repeats)[0]


# --- contenders: each setup returns (epoch, note, obj); epoch() trains one epoch --------------
def setup_fastface(cfg, X, y):
    sizes = cfg["sizes"]
    out_act = "sigmoid" if sizes[-1] == 1 else "softmax"
    layers = [ff.Dense(u, cfg["hidden"]) for u in sizes[1:-1]] + [ff.Dense(sizes[-1], out_act)]
    model = ff.Sequential(layers, input_dim=sizes[0], dtype="float32", seed=0)
    loss = "binary_crossentropy" if sizes[-1] == 1 else "categorical_crossentropy"
    model.compile(loss=loss, optimizer="sgd", learning_rate=cfg["lr"])
    losses = []
    workers = set()

    def epoch():
        losses.extend(model.fit(X, y, epochs=cfg["k"], batch_size=cfg["batch"], verbose=0)["loss"])
        B = cfg["batch"]
        pair = model.uses_fused_path(B) and _fused_pair.worthwhile(model._table(B), B, cfg["n"])
        workers.add(2 if pair else 1)

    def note():
        assert np.isfinite(losses).all(), losses
        ref = X[:64]
        for layer in model.layers:  # plain NumPy forward as the check
            ref = ff.activations.ACTIVATIONS[layer.activation](ref @ layer.W + layer.b)
        np.testing.assert_allclose(model.predict(X[:64]), ref, rtol=1e-3, atol=1e-5)
        path = "fused" if model.uses_fused_path(cfg["batch"]) else "per-layer"
        if path == "fused":
            path += " path, " + " or ".join(f"{w} worker{'s' if w > 1 else ''}" for w in sorted(workers))
        else:
            path += " path"
        return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {path}"

    return epoch, note, model


def bench_fastface_predict(model, x, n=200, chunks=100):
    model.predict(x)
    out = model.predict(x)
    ref = model.forward_all(x[None, :])[-1]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
    return best_of(lambda: [model.predict(x) for _ in range(n)], chunks) / n


def setup_torch(cfg, X, y):
    import torch

    torch.manual_seed(0)
    sizes = cfg["sizes"]
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[cfg["hidden"]]
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(act())
    net = torch.nn.Sequential(*mods)
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"])
    tX = torch.from_numpy(X)
    if sizes[-1] == 1:
        lossf, ty = torch.nn.BCEWithLogitsLoss(), torch.from_numpy(y.astype(np.float32)[:, None])
    else:
        lossf, ty = torch.nn.CrossEntropyLoss(), torch.from_numpy(y)
    B, N = cfg["batch"], len(X)
    losses = []

    def epoch():
        for _ in range(cfg["k"]):
            perm = torch.randperm(N)
            total = 0.0
            for s in range(0, N, B):
                idx = perm[s : s + B]
                opt.zero_grad()
                loss = lossf(net(tX[idx]), ty[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            losses.append(total / N)

    def note():
        assert np.isfinite(losses).all(), losses
        return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"

    return epoch, note, net


def bench_torch_predict(net, x, n=200, chunks=100):
    import torch

    tx = torch.from_numpy(x[None, :])
    with torch.no_grad():
        net(tx)
        return best_of(lambda: [net(tx) for _ in range(n)], chunks) / n


def setup_sklearn(cfg, X, y):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    sizes = cfg["sizes"]
    clf = MLPClassifier(
        hidden_layer_sizes=sizes[1:-1],
        activation={"sigmoid": "logistic", "relu": "relu"}[cfg["hidden"]],
        solver="sgd",
        learning_rate_init=cfg["lr"],
        momentum=0.0,
        nesterovs_momentum=False,
        batch_size=cfg["batch"],
        alpha=0.0,
        shuffle=True,
        random_state=0,
    )
    classes = np.unique(y)
    losses = []

    def epoch():
        for _ in range(cfg["k"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.partial_fit(X, y, classes=classes)
            losses.append(clf.loss_)

    def note():
        assert np.isfinite(losses).all(), losses
        return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, dtype {clf.coefs_[0].dtype}"

    return epoch, note, clf


def bench_sklearn_predict(clf, x, n=100, chunks=30):
    xx = x[None, :]
    clf.predict_proba(xx)
    return best_of(lambda: [clf.predict_proba(xx) for _ in range(n)], chunks) / n


@contextlib.contextmanager
def _torch_threads(n):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:9.3f} ms"
    return f"{seconds:9.3f} s "


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default 7, quick 2)")
    parser.add_argument("--skip-wide", action="store_true", help="skip the wide net (slowest part)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)
    print(f"fastface {ff.__version__} | numpy {np.__version__} | {platform.processor() or platform.machine()} | "
          f"backends {ff.available_backends()} | best of {repeats} repeats, wall clock")
    _machine.print_blas()

    peers = {}
    try:
        import torch

        peers["torch"] = torch.__version__
    except ImportError as exc:
        print(f"PyTorch: absent ({exc}); skipped")
    try:
        import sklearn

        peers["sklearn"] = sklearn.__version__
    except ImportError as exc:
        print(f"scikit-learn: absent ({exc}); skipped")

    torch_threads = None
    if "torch" in peers:
        import torch

        torch_threads = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl: absent; fastface's BLAS timed at its default thread count only")
        threadpool_limits = None
    import numba

    thread_settings = (None, 1) + ((2,) if numba.config.NUMBA_NUM_THREADS >= 2 else ())

    @contextlib.contextmanager
    def limit(threads):
        """fastface on `threads` threads: Numba's (the numba backend's parallel loops; at 2,
        the fused epoch on two workers: config.FUSED_WORKERS = 2) and BLAS's (threadpoolctl);
        None: the defaults (the serial fused epoch)."""
        if threads is None:
            yield
            return
        old = numba.get_num_threads(), ff.config.FUSED_WORKERS
        numba.set_num_threads(threads)
        ff.config.FUSED_WORKERS = threads
        try:
            with threadpool_limits(limits=threads) if threadpool_limits else contextlib.nullcontext():
                yield
        finally:
            numba.set_num_threads(old[0])
            ff.config.FUSED_WORKERS = old[1]

    results = {}
    configs = [COURSE] + ([] if args.skip_wide else [WIDE])
    for cfg in configs:
        X, y = make_data(cfg)
        course = cfg is COURSE
        reps = repeats * 4 if course else max(2, repeats // 2)
        # contenders: (framework, thread label, epoch, note, obj, context factory)
        contenders = []
        for threads in thread_settings:
            epoch, note, obj = setup_fastface(cfg, X, y)
            contenders.append(("fastface", threads, epoch, note, obj, lambda t=threads: limit(t)))
        if "torch" in peers:
            import torch

            for threads in sorted({torch_threads, 1}, reverse=True):
                epoch, note, obj = setup_torch(cfg, X, y)
                contenders.append(("torch", threads, epoch, note, obj, lambda t=threads: _torch_threads(t)))
        if "sklearn" in peers:
            epoch, note, obj = setup_sklearn(cfg, X, y)
            contenders.append(("sklearn", None, epoch, note, obj, contextlib.nullcontext))
        for c in contenders:  # warm-up: compilation and first-call costs
            with c[5]():
                c[2]()
        best = [float("inf")] * len(contenders)
        for _ in range(reps):  # interleaved, so every contender sees the same machine load
            for i, c in enumerate(contenders):
                with c[5]():
                    t0 = time.perf_counter()
                    c[2]()
                    best[i] = min(best[i], (time.perf_counter() - t0) / cfg["k"])
        fastest = {}
        for (name, threads, _, note, obj, ctx), t in zip(contenders, best):
            if name not in fastest or t < fastest[name][0]:
                fastest[name] = (t, threads, obj, ctx)
        t_ff = fastest["fastface"][0]
        for (name, threads, _, note, obj, ctx), t in zip(contenders, best):
            label = f"{name} {'default' if threads is None else f'{threads}thr'}"
            print(f"{cfg['name']:7s} epoch  {label:18s}{fmt(t)}  {t / t_ff:6.2f}x   ({note()})")
        for name, (t, *_rest) in fastest.items():
            results[(cfg["name"], name)] = t
        if course:
            x = X[0].copy()
            _, ff_threads, model, ctx = fastest["fastface"]
            with ctx():
                t1 = bench_fastface_predict(model, x)
            print(f"predict 1 example fastface      {fmt(t1)}   1.00x")
            results[("predict", "fastface")] = t1
            if "torch" in fastest:
                _, threads, net, ctx = fastest["torch"]
                with ctx():
                    t = bench_torch_predict(net, x)
                print(f"predict 1 example torch         {fmt(t)}  {t / t1:6.2f}x")
            if "sklearn" in fastest:
                t = bench_sklearn_predict(fastest["sklearn"][2], x)
                print(f"predict 1 example sklearn       {fmt(t)}  {t / t1:6.2f}x")

    print("targets:")

    def target(label, ok, detail):
        print(f"  [{'met' if ok else 'MISSED'}] {label}: {detail}")

    c = results[("course", "fastface")]
    if ("course", "torch") in results:
        r = results[("course", "torch")] / c
        target("course epoch >= 20x faster than PyTorch", r >= 20, f"{r:.1f}x")
    if ("course", "sklearn") in results:
        r = results[("course", "sklearn")] / c
        target("course epoch >= 10x faster than scikit-learn", r >= 10, f"{r:.1f}x")
    if ("wide", "torch") in results:
        r = results[("wide", "torch")] / results[("wide", "fastface")]
        target("wide epoch >= 1.0x PyTorch", r >= 1.0, f"{r:.2f}x")
    p = results[("predict", "fastface")]
    target("one-example predict <= 5 us", p <= 5e-6, f"{p * 1e6:.2f} us")


if __name__ == "__main__":
    main()
