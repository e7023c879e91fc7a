"""Every hidden unit's saliency for one 64x64 face: fastface vs torch.func.jacrev vs a per-unit loop.

Network 4096-128-40 (sigmoid hidden layer, softmax output), float32, one face x (4096,).
Asked: d a1[j] / d x for all 128 hidden units j -> (128, 4096) (and, as a second row, the 40
output units, d a2[j] / d x -> (40, 4096)).

Contenders, timed in the same run after a warm-up (compilation excluded), each checked
against fastface's float64 answer before timing:
    fastface        ff.explain.saliency(model, x, layer)  (one batched reverse pass; kernels
                    chosen by fastface.ops' automatic rule)
    fastface[numpy] the same with backend="numpy" (BLAS for the forward pass and the matmuls)
    torch-jacrev    torch.func.jacrev of the layer's activation w.r.t. x (vmap over VJPs)
    torch-loop      Captum's NeuronGradient pattern: per unit, a forward pass of the model and
                    torch.autograd.grad(a[layer][0, j], x)   (units x (forward + backward))
    torch-loop-retain  one forward, then units x autograd.grad(..., retain_graph=True)
                    (a stronger loop than Captum's; shown for honesty)

Run as a script (one line per method: median and minimum time, each with its ratio to
fastface's; the verdict uses the medians; targets: >= 10x jacrev, >= 100x the per-unit loop):
    python benches/bench_saliency.py [--repeats 30] [--torch-threads 1]
or with pytest-benchmark:
    python -m pytest benches/bench_saliency.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import fastface as ff
import fastface.explain as fx
from _machine import print_blas

SIZES = (4096, 128, 40)
ACTIVATIONS = ("sigmoid", "softmax")


def make_model(dtype="float32"):
    """The 4096-128-40 identifier shape, weights from seed 0 (timing does not depend on them)."""
    model = ff.Sequential([ff.Dense(SIZES[1], ACTIVATIONS[0]), ff.Dense(SIZES[2], ACTIVATIONS[1])],
                          input_dim=SIZES[0], dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    model.set_weights([
        rng.normal(0.0, 2.0 / np.sqrt(SIZES[0]), (SIZES[0], SIZES[1])), rng.normal(0.0, 0.1, SIZES[1]),
        rng.normal(0.0, 2.0 / np.sqrt(SIZES[1]), (SIZES[1], SIZES[2])), rng.normal(0.0, 0.1, SIZES[2]),
    ])
    return model


def face():
    """One Olivetti face in 0..1 (4096,), or a smooth synthetic image when the data is absent."""
    here = Path(__file__).resolve().parents[1]
    for folder in (os.environ.get("FASTFACE_DATA"), here.parent / "shared" / "data"):
        if folder and Path(folder, "olivetti_faces.npz").is_file():
            with np.load(Path(folder, "olivetti_faces.npz"), allow_pickle=False) as f:
                return (f["images"][0].astype(np.float32) / 255.0).reshape(-1)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    return (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32).reshape(-1)


# --- contenders: name -> builder(model, x, layer) -> zero-argument callable returning (units, IN)
def fastface_fn(model, x, layer):
    return lambda: fx.saliency(model, x, layer)


def fastface_numpy_fn(model, x, layer):
    return lambda: fx.saliency(model, x, layer, backend="numpy")


def _torch_parts(model):
    import torch

    Ws = [torch.from_numpy(np.ascontiguousarray(L.W)) for L in model.layers]
    bs = [torch.from_numpy(np.ascontiguousarray(L.b)) for L in model.layers]
    acts = {"sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, dim=-1),
            "tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z}
    fns = [acts[L.activation] for L in model.layers]

    def layer_out(v, layer):
        a = v
        for k in range(layer):
            a = fns[k](a @ Ws[k] + bs[k])
        return a

    def model_with_hook(v, layer):
        """The whole model's forward (as Captum runs it), returning the hooked layer's output."""
        a, kept = v, None
        for k in range(len(Ws)):
            a = fns[k](a @ Ws[k] + bs[k])
            if k + 1 == layer:
                kept = a
        return kept

    return torch, layer_out, model_with_hook


def jacrev_fn(model, x, layer):
    torch, layer_out, _ = _torch_parts(model)
    xt = torch.from_numpy(x)
    jac = torch.func.jacrev(lambda v: layer_out(v, layer))
    return lambda: jac(xt).numpy()


def loop_fn(model, x, layer):
    """Captum NeuronGradient pattern: forward + autograd.grad per unit."""
    torch, _, model_with_hook = _torch_parts(model)
    units = model.layers[layer - 1].units

    def run():
        rows = []
        for j in range(units):
            xt = torch.from_numpy(x[None, :]).requires_grad_(True)
            a = model_with_hook(xt, layer)
            (g,) = torch.autograd.grad(a[0, j], xt)
            rows.append(g[0])
        return torch.stack(rows).numpy()

    return run


def loop_retain_fn(model, x, layer):
    torch, layer_out, _ = _torch_parts(model)
    units = model.layers[layer - 1].units

    def run():
        xt = torch.from_numpy(x[None, :]).requires_grad_(True)
        a = layer_out(xt, layer)
        rows = [torch.autograd.grad(a[0, j], xt, retain_graph=True)[0][0] for j in range(units)]
        return torch.stack(rows).numpy()

    return run


CONTENDERS = {
    "fastface": fastface_fn,
    "fastface[numpy]": fastface_numpy_fn,
    "torch-jacrev": jacrev_fn,
    "torch-loop": loop_fn,
    "torch-loop-retain": loop_retain_fn,
}
TARGETS = {"torch-jacrev": 10.0, "torch-loop": 100.0}


def reference(model, x, layer):
    """float64 fastface answer (checked against finite differences in tests/test_explain.py)."""
    m64 = make_model("float64")
    m64.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return fx.saliency(m64, x.astype(np.float64), layer, backend="numpy")


def check(name, got, want):
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    if not err < 1e-4:
        raise AssertionError(f"{name}: saliency differs from the float64 reference (relative error {err:.2e})")


def median_time(fn, repeats, budget_s=20.0):
    fn()  # warm-up (compilation, allocator, torch dispatch caches)
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times), min(times), len(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads(N) first (default: torch's own choice)")
    args = parser.parse_args(argv)
    try:
        import torch

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_note = "torch not installed: only fastface is timed"
    model, x = make_model(), face()
    print(f"saliency of every unit, one 64x64 face, net {'-'.join(map(str, SIZES))} "
          f"({'/'.join(ACTIVATIONS)}), float32; {torch_note}; backends {ff.available_backends()}")
    print_blas()
    for layer in (1, 2):
        units = SIZES[layer]
        want = reference(model, x, layer)
        base = base_min = None
        for name, build in CONTENDERS.items():
            try:
                fn = build(model, x, layer)
            except ImportError:
                print(f"  layer {layer} ({units} units)  {name:<18} skipped (torch not installed)")
                continue
            check(name, np.asarray(fn()), want)
            t, t_min, n = median_time(fn, args.repeats if name.startswith("fastface") else max(3, args.repeats // 3))
            if name == "fastface":
                base, base_min = t, t_min
            ratio, ratio_min = t / base, t_min / base_min
            target = TARGETS.get(name)
            verdict = "" if target is None else f"  (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"
            print(f"  layer {layer} ({units:>3} units)  {name:<18} median {t * 1e6:>10.1f} us {ratio:>7.1f}x   "
                  f"min {t_min * 1e6:>10.1f} us {ratio_min:>7.1f}x   [{n} runs]{verdict}")
    return 0


# --- pytest-benchmark entries (python -m pytest benches/bench_saliency.py) ----------------------
def _bench(benchmark, name, layer=1):
    import pytest

    if name != "fastface":
        pytest.importorskip("torch", reason="torch not installed: peer timing skipped")
    model, x = make_model(), face()
    fn = CONTENDERS[name](model, x, layer)
    check(name, np.asarray(fn()), reference(model, x, layer))
    benchmark(fn)


def test_fastface_all_hidden_units(benchmark):
    _bench(benchmark, "fastface")


def test_torch_jacrev_all_hidden_units(benchmark):
    _bench(benchmark, "torch-jacrev")


def test_torch_per_unit_loop(benchmark):
    _bench(benchmark, "torch-loop")


def test_torch_per_unit_loop_retain_graph(benchmark):
    _bench(benchmark, "torch-loop-retain")


def test_fastface_output_units(benchmark):
    _bench(benchmark, "fastface", layer=2)


if __name__ == "__main__":
    raise SystemExit(main())
