"""Build the Cython kernels.

Every extension lives in ``src/crnn/`` (the folder mirrors the package path so that
``from crnn._blas cimport gemm`` resolves) and is installed into the ``crnn`` package.
BLAS comes from ``scipy.linalg.cython_blas``: no link flags, no BLAS headers.

Set ``CRNN_DEBUG=1`` to build with bounds and initialisation checks on.
"""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CRNN_DEBUG", "0") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "nonecheck": False,
    "embedsignature": True,
}

# -O3 lets GCC vectorise the elementwise passes, and -fno-trapping-math lets it if-convert
# the selects in them (we never read the floating-point exception flags). No -ffast-math,
# which would break NaN propagation and the agreement with the NumPy reference.
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-fno-trapping-math"]

# every src/crnn/<name>.pyx becomes the extension crnn.<name>
modules = sorted(p.stem for p in Path("src/crnn").glob("*.pyx"))
extensions = [
    Extension(
        f"crnn.{name}",
        [f"src/crnn/{name}.pyx"],
        include_dirs=["src/crnn"],  # _simd.h
        depends=sorted(str(p) for p in Path("src/crnn").glob("*.h")),
        extra_compile_args=compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in modules
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives=directives,
    ),
)
