"""The examples that ``crnn demo`` runs: one module per model type, each short enough to
read in one sitting.

Every example module defines

``NAME``
    the name ``crnn demo NAME`` takes (``digits``, ``captions``, ...);
``TITLE``
    one line for the results table;
``run(out_dir, quick=True, seed=0, verbose=1) -> Result``
    trains and evaluates, writes its plots (PNG) into ``out_dir`` and returns a
    :class:`Result`. ``quick=True`` is the form ``crnn demo`` runs by default (all examples
    together in about three minutes on 2 cores); ``quick=False`` is ``--full``.

An example that needs data the user must supply (IMDB) takes it from ``run(...,
data=path)`` and raises :class:`ExampleError` with one clear line when it is missing or
malformed.
"""
import dataclasses
import importlib

# In the order ``crnn demo`` runs them.
EXAMPLES = ("digits", "captions", "charlm", "seq2seq", "forecast", "sentiment", "gradients")


class ExampleError(Exception):
    """A failure the CLI reports as one line (missing optional dependency, bad data file,
    unwritable folder) instead of a traceback."""


@dataclasses.dataclass
class Result:
    """What one example measured.

    Attributes
    ----------
    name : str
        The example's ``NAME``.
    metric : str
        What ``value`` is, e.g. ``"held-out accuracy (LSTM)"``.
    value : float
        The headline number.
    baseline : str
        The number to compare it with and what it is, e.g. ``"unigram 4.41 bits/char"``.
    rows : list of dict
        Further measured rows (one per model variant, say) for the detailed table.
    plots : list of str
        Paths of the PNG files written.
    samples : list of str
        Generated text to print, where the example generates any.
    seconds : float
        Wall time of the run.
    """
    name: str
    metric: str
    value: float
    baseline: str = ""
    rows: list = dataclasses.field(default_factory=list)
    plots: list = dataclasses.field(default_factory=list)
    samples: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def load(name):
    """The example module called ``name``; ``ExampleError`` naming the choices if none."""
    if name not in EXAMPLES:
        raise ExampleError(f"unknown example {name!r}; expected one of {', '.join(EXAMPLES)}")
    return importlib.import_module(f"crnn.examples.{name}")
