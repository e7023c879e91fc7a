"""Build and install fastface.

The C backend (csrc/) is compiled by cffi in API mode: `cffi_modules` names the builder
(csrc/ffi_build.py, object `ffibuilder`), which reads csrc/fastface.h as the cdef. When no C
compiler is present the install still succeeds: the failed extension is skipped with a
warning, and at run time the `c` backend reports itself unavailable with the reason.
"""

import os
import sys

import glob

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))


class OptionalBuildExt(build_ext):
    """Build the C extension if a compiler is there; otherwise warn and carry on."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers: the package still works
            self._skip(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(exc)

    @staticmethod
    def _skip(exc):
        sys.stderr.write(
            "WARNING: fastface's C extension was not built "
            f"({type(exc).__name__}: {exc}); the 'c' backend will be unavailable, "
            "every other backend works. Install a C compiler and reinstall to get it.\n"
        )


class SdistWithCSources(sdist):
    """Ship all of csrc/ in the sdist: the cffi builder (csrc/ffi_build.py, which setuptools
    would leave out: it is no package module and the repository has no MANIFEST.in), the
    header it reads as the cdef, and the C sources it includes."""

    def make_release_tree(self, base_dir, files):
        extra = [
            path
            for pattern in ("*.py", "*.h", "*.c", "*.inc", "*.supp")
            for path in sorted(glob.glob(os.path.join("csrc", pattern)))
        ]
        super().make_release_tree(base_dir, sorted(set(files) | set(extra)))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as fh:
        return fh.read()


EXTRAS = {
    "data": ["scikit-learn>=1.6", "scikit-image>=0.21", "Pillow>=9", "matplotlib>=3.6", "tqdm>=4.60"],
    "plots": ["Pillow>=9", "matplotlib>=3.6"],
    # [cu12] brings NVVM/NVRTC for a real GPU; the CUDA simulator (tests) needs plain numba-cuda.
    "cuda": ["numba-cuda[cu12]>=0.20"],
    "torch": ["torch>=2.0"],
    "bench": ["pytest>=7", "pytest-benchmark>=4", "scikit-learn>=1.6"],
}
EXTRAS["test"] = sorted(
    set(EXTRAS["data"] + EXTRAS["bench"] + ["numba-cuda>=0.20", "hypothesis>=6.80", "scipy>=1.9"])
)
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="fastface",
    version="0.1.0",
    description="Hand-written kernels for small dense networks, built for face recognition",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["fastface", "fastface.*"]),
    setup_requires=["cffi>=1.15"],
    install_requires=["numpy>=1.23", "numba>=0.58", "cffi>=1.15"],
    extras_require=EXTRAS,
    cffi_modules=["csrc/ffi_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt, "sdist": SdistWithCSources},
    entry_points={"console_scripts": ["fastface = fastface.cli:main"]},
    zip_safe=False,
)
