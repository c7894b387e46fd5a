"""The recurrent kernels as one table, so that one test runs over every cell and both
backends (thinc's ``test_ops_consistency``): what each cell's ``<family>_forward`` takes
and returns, random problems for it, and calls by keyword that look the same for all.

Notation: ``B`` batch, ``T`` time, ``D`` input features, ``H`` units, ``G`` gates
(``W_x (D, G*H)``, ``W_h (H, G*H)``).
"""
import importlib
import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest

from crnn.backend import _MODULES

BACKENDS = ["cython", "reference"]
DTYPES = [np.float32, np.float64]
# (activation, recurrent_activation) of the gated cells: Keras's default first (the
# vectorised float32 path), then pairs that run the generic loop, every activation in
# both roles, each more than once.
GATED_ACTS = [("tanh", "sigmoid"), ("relu", "sigmoid"), ("linear", "tanh"),
              ("sigmoid", "relu"), ("tanh", "linear"), ("linear", "sigmoid"),
              ("sigmoid", "tanh"), ("tanh", "relu"), ("sigmoid", "linear")]
ACT_ARGS = ("activation", "recurrent_activation")
# the instruction sets of the LSTM's packed GEMM (_lstm._packed_isa), each its own code
ISA_IDS = {0: "C", 1: "avx2", 2: "avx512"}


@dataclass(frozen=True)
class Kernel:
    """One kernel family (``crnn.backend._MODULES``), with its options fixed."""
    id: str
    family: str
    G: int
    states: tuple                 # the initial states, each (B, H)
    outputs: tuple                # what forward returns and backward takes back
    acts: tuple                   # the activation tuples to test, the default first
    large_H: int                  # B*H*G*H above 1e6 at B = 17 (_blas.trans_b_faster)
    options: dict = field(default_factory=dict)
    # h_t = z h_{t-1} + (1 - z) n with z from the first gate block (GRU): an unbounded
    # recurrent activation lets z leave [0, 1] and h grow, unless the problem tames z
    update_gate: bool = False
    inference: bool = False       # has <family>_inference

    def module(self, backend):
        return importlib.import_module(_MODULES[backend, self.family])

    def fn(self, backend, what):
        return getattr(self.module(backend), f"{self.family}_{what}")

    @property
    def lasts(self):
        """The gradients arriving at the final states: dh_last (, dc_last)."""
        return tuple(f"d{s[0]}_last" for s in self.states)

    @property
    def params(self):
        """The arguments that backward returns a gradient for, in its order."""
        return ("x",) + self.states + ("W_x", "W_h", "b")

    def width(self, output, H):
        """The last axis of an output: G*H for the gates, else H."""
        return self.G * H if output == "gates" else H

    def bias_shape(self, H):
        return (2, self.G * H) if self.options.get("reset_after") else (self.G * H,)

    def act_kwargs(self, acts):
        return dict(zip(ACT_ARGS, acts))

    def forward(self, backend, args, acts=None, **kwargs):
        """``args`` (from :func:`problem`) through forward: always a tuple of outputs."""
        acts = self.act_kwargs(acts or self.acts[0])
        out = self.fn(backend, "forward")(**args, **self.options, **acts, **kwargs)
        return out if isinstance(out, tuple) else (out,)

    def backward(self, backend, args, outs, dhs, lasts, acts=None, **kwargs):
        """The gradients of ``self.params``, given forward's ``outs``."""
        given = {k: v for k, v in args.items() if k != "b"}
        given.update(zip(self.outputs, outs), dhs=dhs)
        given.update(zip(self.lasts, lasts))
        acts = self.act_kwargs(acts or self.acts[0])
        return self.fn(backend, "backward")(**given, **self.options, **acts, **kwargs)

    def finals(self, outs):
        """The final states (h_last, c_last) read off forward's outputs."""
        return [outs[self.outputs.index(s[0] + "s")][:, -1] for s in self.states]


KERNELS = [
    Kernel("simple_rnn", "simple_rnn", 1, ("h0",), ("hs",),
           (("tanh",), ("relu",), ("sigmoid",), ("linear",)), large_H=256),
    Kernel("lstm", "lstm", 4, ("h0", "c0"), ("hs", "cs", "gates"), tuple(GATED_ACTS),
           large_H=128, inference=True),
    Kernel("gru", "gru", 3, ("h0",), ("hs", "gates", "hn"), tuple(GATED_ACTS), large_H=192,
           options={"reset_after": True}, update_gate=True, inference=True),
    Kernel("gru-reset_before", "gru", 3, ("h0",), ("hs", "gates", "hn"), tuple(GATED_ACTS),
           large_H=192, options={"reset_after": False}, update_gate=True, inference=True),
]
BY_ID = {k.id: k for k in KERNELS}
IDS = [k.id for k in KERNELS]


def problem(kernel, rng, B, T, D, H, dtype, acts=None, mask=False, w_scale=0.5):
    """Keyword arguments of ``kernel``'s forward: weights small enough that the
    recurrence contracts (so float32 rounding does not grow over long sequences), and a
    recurrent dropout mask ``(B, H)`` or None."""
    acts = acts or kernel.acts[0]
    GH = kernel.G * H
    args = {"x": rng.standard_normal((B, T, D)).astype(dtype)}
    for s in kernel.states:
        args[s] = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    W_x = rng.standard_normal((D, GH)) / np.sqrt(D)
    W_h = w_scale * rng.standard_normal((H, GH)) / np.sqrt(H)
    b = 0.1 * rng.standard_normal(kernel.bias_shape(H))
    if kernel.update_gate and acts[-1] in ("relu", "linear"):
        # keep z inside [0, 1]: its input scaled down, its bias 0.5 (with two bias rows,
        # the two add up to 0.5)
        W_x[:, :H] *= 0.1
        W_h[:, :H] *= 0.1
        b[..., :H] = 0.5 / b.ndim
    args.update(W_x=W_x.astype(dtype), W_h=W_h.astype(dtype), b=b.astype(dtype))
    args["recurrent_mask"] = (((rng.random((B, H)) > 0.3) / 0.7).astype(dtype) if mask
                              else None)
    return args


def output_grads(kernel, rng, B, T, H, dtype, given):
    """``dhs`` and the list of ``d*_last``, each random where ``given`` says, else None."""
    shapes = [(B, T, H)] + [(B, H)] * len(kernel.states)
    grads = [rng.standard_normal(s).astype(dtype) if g else None
             for s, g in zip(shapes, given)]
    return grads[0], grads[1:]


def all_given(kernel):
    """Every choice of which output gradients (dhs, dh_last, ...) are given."""
    return list(itertools.product([True, False], repeat=1 + len(kernel.states)))


def given_id(kernel, given):
    names = ["s"] + [s[0] for s in kernel.states]
    return "".join(n if g else "_" for n, g in zip(names, given))


def over_kernels(names, per_kernel, kernels=KERNELS):
    """``pytest.mark.parametrize(names, ...)`` over rows ``(kernel, *case)``:
    ``per_kernel(kernel)`` yields ``(id, case)`` pairs, each case a tuple."""
    rows, ids = [], []
    for k in kernels:
        for case_id, case in per_kernel(k):
            rows.append((k, *case))
            ids.append(f"{k.id}-{case_id}")
    return pytest.mark.parametrize(names, rows, ids=ids)


def float_range(n_lin, n_geom, specials=True):
    """Pre-activations over the whole float range, for the kernels' own vectorised
    tanh and sigmoid: a linear sweep, tiny values of both signs, zeros, infinities."""
    parts = [np.linspace(-120, 120, n_lin), np.geomspace(1e-30, 20, n_geom),
             -np.geomspace(1e-30, 20, n_geom)]
    if specials:
        parts.append([0, -0.0, 1e30, -1e30] * 16)
    return np.concatenate(parts)
