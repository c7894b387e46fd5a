"""A Keras-style progress bar for ``fit``, ``evaluate`` and ``predict``.

On a terminal, ``verbose=1`` redraws one line in place while the epoch runs::

    Epoch 3/10
     640/1000 [===================>..........] - ETA: 0s - loss: 0.1234 - mae: 0.2856

and ends it with the epoch's time and the validation numbers::

    1000/1000 [==============================] - 1s 52us/sample - loss: 0.1198 - val_loss: 0.1301

When the output is not a terminal (a file, a pipe, a CI log), nothing is redrawn: the
finished line alone is printed, one per epoch. ``verbose=2`` always prints only that
line, without the bar.
"""
import sys
import time

import numpy as np


def format_duration(seconds):
    """``"7s"``, ``"2:05"`` (m:ss) or ``"1:02:05"`` (h:mm:ss), as Keras prints an ETA."""
    seconds = max(float(seconds), 0.0)
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


def format_rate(seconds, unit):
    """Time per ``unit`` in s, ms or us (``"52us/sample"``)."""
    if seconds >= 1:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_values(values):
    """``" - loss: 0.1234 - mae: 1.2000e-04"``: four decimals, or four significant digits
    in exponent form for numbers under 1e-3 in size (as Keras)."""
    parts = []
    for name, value in values.items():
        v = float(np.mean(value))
        parts.append(f" - {name}: {v:.4f}" if abs(v) > 1e-3 or v == 0 or not np.isfinite(v)
                     else f" - {name}: {v:.4e}")
    return "".join(parts)


def is_interactive(stream):
    """Whether ``stream`` shows a redrawn line as such: a terminal, or a notebook's
    stdout."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        pass
    return "ipykernel" in sys.modules and stream is sys.stdout


class Progbar:
    """A progress bar over ``target`` units (samples).

    Parameters
    ----------
    target : int or None
        The number of units in the whole run (the epoch's samples or steps); None when
        it is unknown (a generator's first epoch): the line then shows
        ``current/Unknown``, without a bar or an ETA, as Keras's.
    verbose : {0, 1, 2}
        0 prints nothing; 1 a bar (redrawn on a terminal, printed once at the end
        elsewhere); 2 one line at the end.
    width : int
        Characters in the bar.
    interval : float
        Minimum seconds between two redraws.
    unit_name : str
        What the time per unit is per (``"sample"``).
    file : text stream, optional
        Where to write; ``sys.stdout`` as it is at each write by default.
    """

    def __init__(self, target, verbose=1, width=30, interval=0.05, unit_name="sample",
                 file=None):
        self.target = None if target is None else max(int(target), 0)
        self.verbose = verbose
        self.width = int(width)
        self.interval = float(interval)
        self.unit_name = unit_name
        self.file = file
        self._start = time.perf_counter()
        self._last_draw = None
        self._drawn_width = 0
        self._finished = False

    def update(self, current, values=None, finalize=None):
        """Show ``current`` units done, with ``values`` (a dict of name -> number).

        ``finalize`` (by default: whether ``current`` reached ``target``) ends the line
        with the elapsed time; later updates are ignored.
        """
        if self._finished or self.verbose == 0:
            return
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        values = values or {}
        now = time.perf_counter()
        stream = self.file if self.file is not None else sys.stdout
        if self.verbose == 2:
            if not finalize:
                return
            target = "Unknown" if self.target is None else self.target
            text = (f"{current}/{target} - {format_duration(now - self._start)} - "
                    f"{self._rate(current, now)}{format_values(values)}\n")
        else:
            interactive = is_interactive(stream)
            if not finalize and (not interactive or (self._last_draw is not None and
                                                     now - self._last_draw < self.interval)):
                return
            line = self._line(current, values, now, finalize)
            if interactive:
                # back to the line's start; blank out what a longer previous draw left
                text = "\r" + line + " " * max(self._drawn_width - len(line), 0)
                self._drawn_width = len(line)
            else:
                text = line
            if finalize:
                text += "\n"
        stream.write(text)
        stream.flush()
        self._last_draw = now
        self._finished = bool(finalize)

    def _rate(self, current, now):
        return format_rate((now - self._start) / max(current, 1), self.unit_name)

    def _line(self, current, values, now, finalize):
        target = self.target
        if target is None:
            line = f"{current:>7}/Unknown"
            if finalize:
                line += f" - {format_duration(now - self._start)} {self._rate(current, now)}"
            return line + format_values(values)
        digits = len(str(target))
        fraction = min(current / target, 1.0) if target else 1.0
        filled = int(self.width * fraction)
        bar = "=" * max(filled - 1, 0)
        if filled > 0:
            bar += ">" if current < target else "="
        bar += "." * (self.width - filled)
        line = f"{current:>{digits}}/{target} [{bar}]"
        elapsed = now - self._start
        if finalize:
            line += f" - {format_duration(elapsed)} {self._rate(current, now)}"
        elif current > 0:
            line += f" - ETA: {format_duration(elapsed / current * (target - current))}"
        return line + format_values(values)
