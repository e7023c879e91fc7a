"""Validation and conversion at the public boundary (done once per call, never in hot loops).

dtype policy (documented in the README):
- float32 and float64 arrays pass through unchanged (no copy);
- other real numeric dtypes are converted once, following NumPy's promotion of all the
  arrays of one call: integers and float64 -> float64, float16 with float32 -> float32,
  longdouble -> float64; mixed float32 and float64 -> float64;
- bool, complex, object, string, bytes, datetime and structured arrays are refused (TypeError).

Device arrays (objects exposing ``__cuda_array_interface__`` that are not NumPy arrays: CuPy
arrays, PyTorch CUDA tensors, Numba device arrays) are described, never copied to the host;
they must already be float32 or float64.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ArrayMeta", "is_device_array", "common_float_arrays", "check_ndim"]

_REFUSED_KINDS = {
    "b": "bool",
    "c": "complex",
    "O": "object",
    "U": "string",
    "S": "bytes",
    "V": "structured/void",
    "M": "datetime",
    "m": "timedelta",
}
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_FLOATS = (_F32, _F64)


class ArrayMeta:
    """Shape and dtype of a device array, read from its ``__cuda_array_interface__``."""

    __slots__ = ("shape", "dtype", "ndim")

    def __init__(self, obj):
        iface = obj.__cuda_array_interface__
        self.shape = tuple(int(s) for s in iface["shape"])
        self.dtype = np.dtype(iface["typestr"])
        self.ndim = len(self.shape)


def is_device_array(x) -> bool:
    """True for GPU arrays: ``__cuda_array_interface__`` (CuPy, PyTorch, Numba), or a Numba
    simulator device array (``__cuda_ndarray__``; the cuda backend gives those the interface)."""
    if isinstance(x, np.ndarray):
        return False
    return hasattr(x, "__cuda_array_interface__") or getattr(x, "__cuda_ndarray__", False)


def _refuse_dtype(name: str, dtype: np.dtype) -> None:
    kind = _REFUSED_KINDS.get(dtype.kind)
    if kind is not None:
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64 preferred); got a {kind} array "
            f"(dtype {dtype}). Convert it first, e.g. {name}.astype(np.float32)"
        )


def common_float_arrays(named: dict, where: str):
    """Convert the arrays of one call to one float dtype; return (arrays, on_device, dtype).

    `named` maps argument names to array-likes. Host inputs come back as NumPy arrays
    (views of the originals when no conversion is needed, strides kept). Device inputs come
    back untouched; mixing host and device arrays is refused.
    """
    values = list(named.values())
    # Fast path (the common case, kept to a few hundred nanoseconds): NumPy arrays that all
    # share one native float32/float64 dtype. Builtin dtypes are singletons, so `is` works.
    dtype = values[0].dtype if type(values[0]) is np.ndarray else None
    if dtype is _F32 or dtype is _F64:
        for v in values:
            if type(v) is not np.ndarray or v.dtype is not dtype:
                break
        else:
            return values, False, dtype
    return _common_float_arrays_slow(named, values, where)


def _common_float_arrays_slow(named: dict, values: list, where: str):
    device = [is_device_array(v) for v in values]
    if any(device):
        from . import backends

        backends.get("cuda")  # gives simulator device arrays their __cuda_array_interface__
        if not all(device):
            hosts = [k for k, d in zip(named, device) if not d]
            raise TypeError(
                f"{where}: got device (GPU) arrays mixed with host arrays ({', '.join(hosts)}); "
                "pass all of them on the same side (copy with cuda.to_device or .cpu().numpy())"
            )
        dtypes = {np.dtype(v.__cuda_array_interface__["typestr"]) for v in values}
        if len(dtypes) != 1 or next(iter(dtypes)) not in _FLOATS:
            raise TypeError(
                f"{where}: device arrays must all be float32 or all float64; got dtypes "
                f"{sorted(str(d) for d in dtypes)}. Convert them on the device first"
            )
        return values, True, next(iter(dtypes))

    arrays = []
    for name, value in named.items():
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        _refuse_dtype(name, arr.dtype)
        arrays.append(arr)
    dtype = arrays[0].dtype
    if dtype in _FLOATS and dtype.isnative and all(a.dtype == dtype for a in arrays):
        return arrays, False, dtype
    dtype = np.result_type(*arrays)
    if dtype.kind != "f" or dtype.itemsize > 8:
        dtype = _F64
    elif dtype.itemsize < 4:
        dtype = _F32
    else:
        dtype = dtype.newbyteorder("=")  # byte-swapped input is converted to native order
    return [a.astype(dtype, copy=False) for a in arrays], False, dtype


def check_ndim(x, name: str, ndim: int, legend: str, where: str) -> None:
    """Raise a ValueError unless x.ndim == ndim; `legend` names the axes, e.g. '(N, IN)'."""
    if x.ndim != ndim:
        hint = ""
        if name == "x" and x.ndim == 1 and ndim == 2:
            hint = "; for a single example use x[None, :] (shape (1, IN))"
        raise ValueError(
            f"{where}: {name} must be {ndim}-D {legend}; got shape {tuple(x.shape)}{hint}"
        )
