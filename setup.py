"""Build the Cython kernels.

Every extension lives in ``src/crnn/`` (the folder mirrors the package path so that
``from crnn._blas cimport gemm`` resolves) and is installed into the ``crnn`` package.
BLAS comes from ``scipy.linalg.cython_blas``: no link flags, no BLAS headers.

Set ``CRNN_DEBUG=1`` to build with bounds and initialisation checks on, and
``CRNN_NO_OPENMP=1`` to build without OpenMP (which is otherwise used where the compiler
takes ``-fopenmp``). ``CRNN_BUILD_ONLY=_lstm,_gru`` rebuilds only the named extensions
(for working on one kernel while another is being edited). The extensions compile in
parallel, one per core, and an extension already built in place from the same kernel
sources, flags and Cython is reused (:class:`BuildExt`); ``pip install -v`` shows which.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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


def openmp_flags():
    """``-fopenmp`` if the C compiler builds and links an OpenMP program with it, else
    nothing (the kernels then run their parallel loops on one thread)."""
    if os.environ.get("CRNN_NO_OPENMP", "0") == "1":
        return []
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if not shutil.which(cc[0]):
        return []
    source = ("#include <omp.h>\nint main(void) { int n = 0;\n"
              "#pragma omp parallel\n{ n = omp_get_num_threads(); }\nreturn n < 1; }\n")
    with tempfile.TemporaryDirectory() as tmp:
        c_file = Path(tmp) / "omp.c"
        c_file.write_text(source)
        try:
            result = subprocess.run([*cc, "-fopenmp", str(c_file), "-o",
                                     str(Path(tmp) / "omp")],
                                    capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return []
    return ["-fopenmp"] if result.returncode == 0 else []


# The modules built with OpenMP (_lstm: the packed path of _lstm_packed.h runs on a
# thread pool of its own, src/crnn/_pgemm.h, as many threads as crnn.set_num_threads
# says, crnn/cores.py; without OpenMP it runs on the calling thread alone).
OPENMP_MODULES = {"_lstm"}
OPENMP = openmp_flags()
if (not OPENMP and os.environ.get("CRNN_NO_OPENMP", "0") != "1"
        and any(a.startswith("build") for a in sys.argv[1:])):
    print("crnn: the C compiler does not take -fopenmp; the packed LSTM GEMM runs on "
          "one thread", file=sys.stderr)

# _optim's updates must round each operation as NumPy does (its twin, bit for bit): no
# multiply-add contracted into an FMA where a -march flag would allow one.
EXTRA_ARGS = {"_optim": ["-ffp-contract=off"]}

# every src/crnn/<name>.pyx becomes the extension crnn.<name>
modules = sorted(p.stem for p in Path("src/crnn").glob("*.pyx"))
if os.environ.get("CRNN_BUILD_ONLY"):
    modules = [m for m in modules if m in os.environ["CRNN_BUILD_ONLY"].split(",")]
extensions = [
    Extension(
        f"crnn.{name}",
        [f"src/crnn/{name}.pyx"],
        include_dirs=["src/crnn"],  # _simd.h
        depends=sorted(str(p) for p in Path("src/crnn").glob("*.h")),
        extra_compile_args=(compile_args + (OPENMP if name in OPENMP_MODULES else [])
                            + EXTRA_ARGS.get(name, [])),
        extra_link_args=OPENMP if name in OPENMP_MODULES else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in modules
]



class BuildExt(build_ext):
    """setuptools' build_ext on every core (one compiler process an extension), saying
    what it builds, and reusing an extension built in place before from the same kernel
    sources, flags and Cython (``pip install -e`` compiles in a fresh temporary folder
    each time: the README's second command would compile everything the first one just
    compiled). ``pip install -v`` shows the messages."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    @staticmethod
    def _key(ext):
        """What the extension is built from: every kernel source (the .pyx, .pxd and .h
        files of src/crnn, which cimport one another), the flags and Cython's version.
        Contents, not times: pip's fresh build environment makes Cython regenerate
        every .c file."""
        digest = hashlib.sha256()
        for path in sorted(Path("src/crnn").iterdir()):
            if path.suffix in (".pyx", ".pxd", ".h"):
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        digest.update(" ".join([Cython.__version__, ext.name, *ext.extra_compile_args,
                                *ext.extra_link_args]).encode())
        return digest.hexdigest()

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        in_place = Path(ext.name.replace(".", "/")).with_name(Path(target).name)
        stamp = in_place.with_name(in_place.name + ".key")
        key = self._key(ext)
        # the stamp holds the key and the digest of the library compiled from it: the
        # in-place copy is that library only if the build that made it succeeded
        if (not self.force and in_place.exists() and stamp.exists()
                and stamp.read_text() == f"{key} {_digest(in_place)}"):
            print(f"crnn: {ext.name} is up to date ({in_place}), reused", file=sys.stderr)
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            shutil.copyfile(in_place, target)
            return
        print(f"crnn: compiling {ext.name}", file=sys.stderr)
        super().build_extension(ext)
        stamp.write_text(f"{key} {_digest(target)}")


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        extensions,
        # cimports resolve under src/ (crnn._blas -> src/crnn/_blas.pxd), and cythonize
        # follows them: a change to a .pxd (_blas, _activations, _lstm_rows, _gru_rows)
        # regenerates every module that cimports it, directly or through another .pxd.
        # The headers the .pxd files name are in each extension's depends above.
        include_path=["src"],
        compiler_directives=directives,
        nthreads=os.cpu_count() or 1,
    ),
)
