"""cffi builder (API mode) for fastface's C kernels: ``fastface._cfastface``.

``setup.py`` names this module in ``cffi_modules`` ("csrc/ffi_build.py:ffibuilder"), so
``pip install .`` generates the C wrapper and compiles it with csrc/fastface.c. The cdef is
read from csrc/fastface.h (the region between FF_CDEF_BEGIN and FF_CDEF_END), so every
declaration is written once, in the header, and cannot drift.

For a development build without pip:   python csrc/ffi_build.py
(compiles in build/ffi_dev/ and moves the extension into fastface/, replacing any older
build of it there; ``pip install -e .`` does the same through setuptools).

Compiler flags, and why not -march=native by default:
  -O3 only, plus the platform's defaults. The AVX2/FMA and AVX-512 micro-kernels are compiled
  through GCC/Clang function target attributes (no -m flag for the whole file) and picked at
  run time by CPU detection (__builtin_cpu_supports), so the same binary runs on any x86-64
  CPU and still uses the widest vectors it finds. -march=native would let the compiler emit
  AVX-512 in *every* function, and a built extension copied to an older CPU (a wheel, a Docker
  layer, a shared home directory on a cluster) would die with SIGILL instead of falling back.
  It buys little here since the hot loop is the hand-written micro-kernel. Set
  FASTFACE_NATIVE=1 at install time to add -march=native anyway (you promise to run the
  build on the machine that compiled it). The SIMD kernels are compiled only when a probe
  (simd_compiles) shows the compiler accepts them; otherwise, or with FASTFACE_NO_SIMD=1,
  the build is plain C. MSVC gets /O2 and the plain-C kernels. Never -ffast-math: NaN and inf
  must propagate as in NumPy.
"""

from __future__ import annotations

import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "fastface.h")
SOURCES = [os.path.join(HERE, "fastface.c")]
DEPENDS = [HEADER, os.path.join(HERE, "fastface_kernels.inc")]

_CDEF_RE = re.compile(r"/\*\s*FF_CDEF_BEGIN\s*\*/(.*?)/\*\s*FF_CDEF_END\s*\*/", re.S)


def read_cdef(path: str = HEADER) -> str:
    """The declarations between the FF_CDEF markers of the header, for ffi.cdef()."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    match = _CDEF_RE.search(text)
    if match is None:
        raise RuntimeError(f"{path}: no /* FF_CDEF_BEGIN */ ... /* FF_CDEF_END */ region")
    cdef = match.group(1)
    if re.search(r"^\s*#", cdef, re.M):
        raise RuntimeError(f"{path}: the cdef region must not contain preprocessor lines")
    return cdef


def _rel(path: str) -> str:
    """Relative to the working directory when below it (setuptools prefers that); absolute
    for the development build, where cffi compiles from inside its temporary directory."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") or __name__ == "__main__" else rel


# Compile-time check for the SIMD micro-kernels: can this compiler build AVX2/FMA and
# AVX-512F code through function target attributes and detect the CPU at run time? If not
# (an old or unusual compiler, or not x86), csrc/fastface.c is built with -DFF_NO_SIMD:
# plain C only. Whether the CPU has the instructions is decided at run time, not here.
_SIMD_PROBE = r"""
#include <immintrin.h>
__attribute__((target("avx2,fma"))) __m256 ff_probe_avx2(__m256 a) { return _mm256_fmadd_ps(a, a, a); }
__attribute__((target("avx512f"))) __m512 ff_probe_avx512(__m512 a) { return _mm512_fmadd_ps(a, a, a); }
int ff_probe_cpu(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512f"); }
"""


def simd_compiles() -> bool:
    """True when the C compiler setuptools will use compiles the SIMD probe above."""
    if os.environ.get("FASTFACE_NO_SIMD") == "1":
        return False
    import tempfile

    import setuptools  # noqa: F401  (provides distutils on Python >= 3.12)
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    try:
        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "ff_simd_probe.c")
            with open(src, "w", encoding="utf-8") as fh:
                fh.write(_SIMD_PROBE)
            compiler.compile([src], output_dir=tmp)
    except Exception:  # no compiler, no immintrin.h, no target attribute: plain C
        return False
    return True


def compile_args() -> list:
    if sys.platform == "win32" and "gcc" not in os.environ.get("CC", ""):
        return ["/O2"]  # MSVC: the plain-C kernels (the SIMD ones need GCC/Clang attributes)
    args = ["-O3", "-std=gnu99"]
    if not simd_compiles():
        args.append("-DFF_NO_SIMD")
    if os.environ.get("FASTFACE_NATIVE") == "1":
        args.append("-march=native")
    return args


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "fastface._cfastface",
    '#include "fastface.h"\n',
    sources=[_rel(p) for p in SOURCES],
    include_dirs=[_rel(HERE)],
    depends=[_rel(p) for p in DEPENDS],
    extra_compile_args=compile_args(),
    libraries=[] if sys.platform == "win32" else ["m"],
)

def _develop() -> str:
    """Compile into build/ffi_dev and move the extension into fastface/; return its path."""
    import glob
    import importlib.machinery
    import shutil

    root = os.path.dirname(HERE)
    built = ffibuilder.compile(tmpdir=os.path.join(root, "build", "ffi_dev"), verbose=True)
    package = os.path.join(root, "fastface")
    for old in glob.glob(os.path.join(package, "_cfastface.*")):  # stale builds would shadow it
        os.remove(old)
    name = os.path.basename(built)
    if sys.platform != "win32" and ".abi3.so" in importlib.machinery.EXTENSION_SUFFIXES:
        name = "_cfastface.abi3.so"  # the name `pip install -e .` gives it: one file, no shadowing
    target = os.path.join(package, name)
    shutil.move(built, target)
    return target


if __name__ == "__main__":
    print(_develop())
