"""The ``crnn`` command: ``crnn demo`` trains and evaluates the examples, ``crnn bench`` runs
the benchmark harness.

::

    crnn demo                       # every example, quick form (about three minutes)
    crnn demo digits captions       # some of them
    crnn demo --full --out runs/    # the longer runs, plots into runs/
    crnn demo sentiment --imdb ~/data/imdb.npz
    crnn bench --quick              # benchmarks/bench_rnn.py --quick
    crnn bench --fit --quick        # benchmarks/bench_fit.py --quick (an epoch of fit)

Also ``python -m crnn``. A failure the user can act on (an unknown example, a missing
optional dependency, an unwritable folder, a data file that is not what it claims) prints
one line on stderr and exits non-zero; ``--traceback`` shows the whole story instead.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crnn import __version__
from crnn.examples import EXAMPLES, ExampleError

PROG = "crnn"
BENCH_SCRIPT = Path("benchmarks") / "bench_rnn.py"
FIT_SCRIPT = Path("benchmarks") / "bench_fit.py"   # crnn bench --fit
# Examples that need data the user supplies; the quick run of all examples skips them
# without it, naming one explicitly without it is an error.
NEEDS_DATA = {"sentiment": "--imdb PATH (Keras's imdb.npz or the aclImdb/ folder)"}


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CLIError(Exception):
    """One line for stderr and an exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def build_parser():
    """The argument parser of ``crnn`` and its two subcommands."""
    parser = Parser(
        prog=PROG, description="crnn: recurrent neural networks on the CPU. Train and "
        "evaluate the examples (demo) or time the kernels (bench).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="train and evaluate the examples, write their plots",
        description="Train and evaluate the examples (all of them when none is named) and "
        "print a results table; the plots go to --out as PNG files. The quick form (the "
        "default) runs all of them in about three minutes on 2 cores.",
        epilog="examples: " + ", ".join(EXAMPLES))
    demo.set_defaults(subparser=demo)
    demo.add_argument("names", nargs="*", metavar="NAME",
                      help="examples to run, in the order given (default: all)")
    demo.add_argument("--full", action="store_true",
                      help="the longer runs (minutes each) instead of the quick form")
    demo.add_argument("--out", default="crnn-demo", metavar="DIR",
                      help="folder for the plots, created if needed (default: ./crnn-demo/)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--quiet", "-q", action="store_true",
                      help="no progress bars, only the results table")
    demo.add_argument("--imdb", "--data", dest="imdb", metavar="PATH",
                      help="the IMDB reviews for the sentiment example: Keras's imdb.npz or "
                      "the aclImdb/ folder (nothing is downloaded)")
    demo.add_argument("--list", action="store_true", help="list the examples and exit")
    demo.add_argument("--traceback", action="store_true",
                      help="on a failure, show the traceback (for bug reports)")

    bench = sub.add_parser(
        "bench", add_help=False,
        help=f"run the benchmark harness ({BENCH_SCRIPT.as_posix()})",
        description=f"Run {BENCH_SCRIPT.as_posix()} (the kernels) or, with --fit, "
        f"{FIT_SCRIPT.as_posix()} (an epoch of fit) of a source checkout (the benchmarks "
        "are not part of the installed package), passing every other argument on to it.",
        usage=f"{PROG} bench [-h] [--fit] [ARGS ...]", allow_abbrev=False)
    bench.add_argument("-h", "--help", action="store_true",
                       help="show this help and the benchmark's own options, then exit")
    bench.add_argument("--fit", action="store_true",
                       help=f"time whole models in fit ({FIT_SCRIPT.as_posix()})")
    bench.set_defaults(subparser=bench)
    return parser


# -- crnn bench ----------------------------------------------------------------------------
def find_bench_script(name=BENCH_SCRIPT):
    """``name`` (``benchmarks/bench_rnn.py``) of the checkout crnn was imported from, or of
    the current folder; None when there is neither (an installed wheel has no benchmarks)."""
    here = Path(__file__).resolve().parent.parent
    for root in (here, Path.cwd()):
        if (root / name).is_file():
            return root / name
    return None


def bench(args, extra):
    """Run the benchmark script with ``extra`` as its arguments; its exit code."""
    name = FIT_SCRIPT if args.fit else BENCH_SCRIPT
    script = find_bench_script(name)
    if args.help:
        args.subparser.print_help()
        if script is None:
            return 0
        print(f"\nOptions of {script}:\n", flush=True)
        extra = ["--help"]
    if script is None:
        raise CLIError(f"crnn bench: {name.as_posix()} not found (the benchmarks "
                       "ship with the source checkout, not the installed package; run "
                       "crnn bench from a clone of the repository)")
    # The script imports crnn: the same crnn as this command's, installed or not.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.call([sys.executable, str(script), *extra], env=env)


# -- crnn demo -----------------------------------------------------------------------------
def writable_folder(path):
    """Create ``path`` if needed and check a file can be written there; CLIError if not."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise CLIError(f"crnn demo: cannot write the plots to {path}: "
                       f"{e.strerror or e}") from None


def load_example(name):
    """The example module, or CLIError saying why it cannot be imported."""
    from crnn import examples
    try:
        return examples.load(name)
    except ModuleNotFoundError as e:
        if e.name == f"crnn.examples.{name}":
            raise CLIError(f"crnn demo {name}: not available in this version of crnn "
                           f"(crnn/examples/{name}.py is missing)") from None
        raise CLIError(failure_line(name, e)) from None
    except ExampleError as e:
        raise CLIError(f"crnn demo: {e}", code=2) from None


def failure_line(name, error):
    """One line saying why example ``name`` failed."""
    if isinstance(error, CLIError):
        line = str(error)
    elif isinstance(error, ModuleNotFoundError) and error.name:
        line = (f"crnn demo {name}: needs the {error.name.split('.')[0]} package: "
                f'pip install "crnn[examples]"')
    elif isinstance(error, (ExampleError, OSError)):
        line = f"crnn demo {name}: {error}"
    else:                                     # a bug: still one line, unless asked
        line = (f"crnn demo {name}: failed with {type(error).__name__}: {error} (run again "
                f"with --traceback for the details)")
    return " ".join(line.split())


def fmt(value):
    """A number for the table: four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header, rows):
    """Rows of strings as aligned columns under a header and a rule."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def print_detail(result):
    """An example's own rows (one per model variant) and its generated samples."""
    if result.rows:
        keys = list(dict.fromkeys(k for r in result.rows for k in r))
        print(table(keys, [[fmt(r.get(k, "")) for k in keys] for r in result.rows]))
    for s in result.samples:
        print(f"  {s}")
    print(f"{result.name}: {result.metric} = {fmt(result.value)}"
          + (f" (baseline: {result.baseline})" if result.baseline else "")
          + f", {result.seconds:.1f}s\n", flush=True)


def demo(args):
    """Run the chosen examples; 0 when every one that ran succeeded."""
    from crnn.examples import _plots
    if args.list:
        for name in EXAMPLES:
            try:
                title = load_example(name).TITLE
            except CLIError as e:
                title = f"({e})"
            print(f"{name:10s} {title}")
        return 0
    for name in args.names:
        if name not in EXAMPLES:
            raise CLIError(f"crnn demo: unknown example {name!r}; expected one of "
                           f"{', '.join(EXAMPLES)}", code=2)
    names = list(dict.fromkeys(args.names)) or list(EXAMPLES)
    if args.imdb is not None and not os.path.exists(args.imdb):
        raise CLIError(f"crnn demo: --imdb {args.imdb}: no such file or folder")
    for name in names:
        if name in NEEDS_DATA and args.names and args.imdb is None:
            raise CLIError(f"crnn demo {name}: needs the data, which is not downloaded: "
                           f"{NEEDS_DATA[name]}")
    writable_folder(args.out)
    try:
        _plots.pyplot()                     # fail now, not after minutes of training
    except ExampleError as e:
        raise CLIError(f"crnn demo: {e}") from None

    results, notes, failed = [], [], 0
    started = time.perf_counter()
    for i, name in enumerate(names, 1):
        if name in NEEDS_DATA and args.imdb is None:
            notes.append(f"{name}: skipped, needs {NEEDS_DATA[name]}")
            continue
        try:
            module = load_example(name)
            if not args.quiet:
                print(f"== [{i}/{len(names)}] {name}: {module.TITLE}", flush=True)
            options = {"data": args.imdb} if name in NEEDS_DATA else {}
            t0 = time.perf_counter()
            result = module.run(args.out, quick=not args.full, seed=args.seed,
                                verbose=0 if args.quiet else 1, **options)
            result.seconds = result.seconds or time.perf_counter() - t0
        except Exception as e:
            if args.traceback:
                raise
            print(failure_line(name, e), file=sys.stderr, flush=True)
            notes.append(f"{name}: failed")
            failed += 1
            continue
        results.append(result)
        if not args.quiet:
            print_detail(result)

    if results:
        print(table(["example", "metric", "value", "baseline", "seconds"],
                    [[r.name, r.metric, fmt(r.value), r.baseline, f"{r.seconds:.1f}"]
                     for r in results]))
        print(f"total {time.perf_counter() - started:.1f}s")
        plots = [p for r in results for p in r.plots]
        if plots:
            print("plots:")
            for p in plots:
                print(f"  {p}")
    for note in notes:
        print(f"note: {note}")
    return 1 if failed else 0


def main(argv=None):
    """Run ``crnn`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args, extra = parser.parse_known_args(argv)
        if args.command == "demo":           # again, so that names and options may mix
            return demo(args.subparser.parse_intermixed_args(argv[argv.index("demo") + 1:]))
        if args.command == "bench":
            return bench(args, extra)
        parser.print_help(sys.stderr)
        return 2
    except SystemExit as e:                   # --help, --version, a usage error
        return e.code if isinstance(e.code, int) else 1
    except CLIError as e:
        print(e, file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (crnn demo --list | head): stop quietly, as a program
        # killed by SIGPIPE does, and keep Python's exit flush from failing again
        if sys.stdout is sys.__stdout__:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        return 141
