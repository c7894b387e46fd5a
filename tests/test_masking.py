"""Variable-length sequences (issue #5): the mask of real steps.

Kernels: the Cython loops against the NumPy reference with a mask (forward and
backward, both dtypes, both LSTM loops, random shapes), the reference against central
finite differences, a padded batch against each sequence run alone at its own length, an
all-true mask against no mask, and the mask's checks. Layers: ``mask=`` and
``lengths=`` against each sequence alone and against PyTorch's packed sequences
(uni- and bidirectional, final states and every gradient), masks with holes, bad masks.
Models: masks from Embedding and Masking through Sequential, functional and subclassed
models to the loss, and a whole model's gradient against finite differences.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import crnn
from conftest import assert_close, numeric_grad, require_torch
from crnn import _gru, _lstm, _simple_rnn
from crnn.reference import gru as ref_gru, lstm as ref_lstm, simple_rnn as ref_simple_rnn
from test_layers_basic import check_gradients, tape_gradients

DTYPES = [np.float32, np.float64]


# -- the three kernel families behind one interface -------------------------------------
class Family:
    """How to call one family's kernels: ``forward(mod, p, mask)`` returns the forward's
    outputs (hs first), ``backward(mod, p, outs, dhs, d_last, mask)`` the gradients (dx,
    the initial states' gradients, then the weights'). ``p`` is a dict of arguments."""

    def __init__(self, name, fast, ref, G, n_states, extra=()):
        self.name, self.fast, self.ref, self.G, self.n_states = name, fast, ref, G, n_states
        self.extra = dict(extra)

    def problem(self, rng, B, T, D, H, dtype, dropout=False, activations=None):
        G = self.G
        p = {"x": rng.standard_normal((B, T, D)).astype(dtype),
             "states": [(0.5 * rng.standard_normal((B, H))).astype(dtype)
                        for _ in range(self.n_states)],
             "W_x": (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(dtype),
             "W_h": (0.5 * rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(dtype),
             "m": ((rng.random((B, H)) > 0.3) / 0.7).astype(dtype) if dropout else None}
        if self.name == "gru":
            shape = (2, G * H) if self.extra.get("reset_after", True) else (G * H,)
        else:
            shape = (G * H,)
        p["b"] = (0.1 * rng.standard_normal(shape)).astype(dtype)
        p["act"] = activations or (("tanh",) if self.name == "simple_rnn"
                                   else ("tanh", "sigmoid"))
        return p

    def forward(self, mod, p, mask):
        x, s, W_x, W_h, b, m = p["x"], p["states"], p["W_x"], p["W_h"], p["b"], p["m"]
        if self.name == "simple_rnn":
            return (mod.simple_rnn_forward(x, s[0], W_x, W_h, b, *p["act"],
                                           recurrent_mask=m, mask=mask),)
        if self.name == "lstm":
            return mod.lstm_forward(x, s[0], s[1], W_x, W_h, b, *p["act"],
                                    recurrent_mask=m, mask=mask)
        return mod.gru_forward(x, s[0], W_x, W_h, b, self.extra.get("reset_after", True),
                               *p["act"], recurrent_mask=m, mask=mask)

    def backward(self, mod, p, outs, dhs, d_last, mask):
        x, s, W_x, W_h, m = p["x"], p["states"], p["W_x"], p["W_h"], p["m"]
        if self.name == "simple_rnn":
            return mod.simple_rnn_backward(x, s[0], W_x, W_h, outs[0], dhs, d_last[0],
                                           *p["act"], recurrent_mask=m, mask=mask)
        if self.name == "lstm":
            return mod.lstm_backward(x, s[0], s[1], W_x, W_h, *outs, dhs, d_last[0],
                                     d_last[1], *p["act"], recurrent_mask=m, mask=mask)
        return mod.gru_backward(x, s[0], W_x, W_h, *outs, dhs, d_last[0],
                                self.extra.get("reset_after", True), *p["act"],
                                recurrent_mask=m, mask=mask)

    def finals(self, outs):
        """The final states from the forward's outputs (hs, and cs for the LSTM)."""
        if self.name == "lstm":
            return [outs[0][:, -1], outs[1][:, -1]]
        return [outs[0][:, -1]]

    def __repr__(self):
        return self.name + ("" if self.extra.get("reset_after", True) else "-before")


FAMILIES = [Family("simple_rnn", _simple_rnn, ref_simple_rnn, 1, 1),
            Family("lstm", _lstm, ref_lstm, 4, 2),
            Family("gru", _gru, ref_gru, 3, 1),
            Family("gru", _gru, ref_gru, 3, 1, {"reset_after": False})]
FAMILY_IDS = [repr(f) for f in FAMILIES]
GENERIC_ACTIVATIONS = {"simple_rnn": ("relu",), "lstm": ("relu", "tanh"),
                       "gru": ("linear", "tanh")}


def random_mask(rng, B, T):
    """A mask with every kind of row: padding inside and at both ends, a row all real,
    a row all padding, and (B > 3) a row with one real step."""
    mask = rng.random((B, T)) > 0.4
    mask[0] = True
    if B > 1:
        mask[1] = False
    if B > 2:
        mask[2, :] = False
        mask[2, T // 2] = True
    return mask


def right_padded(lengths, T):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


# -- the Cython kernels against the reference ---------------------------------------------
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("size", [(5, 7, 3, 4), (1, 1, 2, 3), (6, 4, 3, 128)])
def test_fast_matches_reference(rng, family, dtype, dropout, generic, size):
    # (6, 4, 3, 128): B*H*G above 1e6 for the LSTM and GRU, where the recurrent GEMMs
    # read the transposed copy of W_h (_blas.trans_b_faster).
    B, T, D, H = size
    p = family.problem(rng, B, T, D, H, dtype, dropout,
                       GENERIC_ACTIVATIONS[family.name] if generic else None)
    mask = random_mask(rng, B, T)
    outs_ref = family.forward(family.ref, p, mask)
    outs_fast = family.forward(family.fast, p, mask.astype(np.uint8))
    for a, e in zip(outs_fast, outs_ref):
        assert_close(a, e, dtype, 10)
    dhs = rng.standard_normal((B, T, H)).astype(dtype)
    d_last = [rng.standard_normal((B, H)).astype(dtype) for _ in p["states"]]
    for dhs_, d_last_ in ((dhs, d_last), (None, d_last), (dhs, [None] * len(d_last))):
        g_ref = family.backward(family.ref, p, outs_ref, dhs_, d_last_, mask)
        g_fast = family.backward(family.fast, p, outs_fast, dhs_, d_last_, mask)
        for a, e in zip(g_fast, g_ref):
            assert_close(a, e, dtype, 10)


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("size", [(4, 6, 5, 16), (13, 5, 3, 70), (1, 3, 2, 1)])
def test_lstm_both_paths_with_mask(rng, path, dropout, size):
    """The float32 LSTM's two loops (the packed GEMM's and the BLAS one, forced) against
    the reference with a mask; an all-true mask is bit for bit no mask."""
    family = FAMILIES[1]
    previous = _lstm._force_path(path)
    try:
        B, T, D, H = size
        p = family.problem(rng, B, T, D, H, np.float32, dropout)
        mask = random_mask(rng, B, T)
        outs_ref = family.forward(family.ref, p, mask)
        outs = family.forward(family.fast, p, mask)
        for a, e in zip(outs, outs_ref):
            assert_close(a, e, np.float32, 10)
        dhs = rng.standard_normal((B, T, H)).astype(np.float32)
        d_last = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(2)]
        for dhs_, d_last_ in ((dhs, d_last), (None, d_last), (dhs, [None, None])):
            g_ref = family.backward(family.ref, p, outs_ref, dhs_, d_last_, mask)
            g = family.backward(family.fast, p, outs, dhs_, d_last_, mask)
            for a, e in zip(g, g_ref):
                assert_close(a, e, np.float32, 10)
        full = family.forward(family.fast, p, np.ones((B, T), bool))
        none = family.forward(family.fast, p, None)
        for a, e in zip(full, none):
            np.testing.assert_array_equal(a, e)
    finally:
        _lstm._force_path(previous)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("backend", ["fast", "ref"])
def test_all_true_mask_is_no_mask(rng, family, backend):
    mod = getattr(family, backend)
    B, T, D, H = 3, 5, 2, 4
    p = family.problem(rng, B, T, D, H, np.float64, dropout=True)
    full = np.ones((B, T), bool)
    outs = family.forward(mod, p, None)
    for a, e in zip(family.forward(mod, p, full), outs):
        np.testing.assert_array_equal(a, e)
    dhs = rng.standard_normal((B, T, H))
    d_last = [rng.standard_normal((B, H)) for _ in p["states"]]
    for a, e in zip(family.backward(mod, p, outs, dhs, d_last, full),
                    family.backward(mod, p, outs, dhs, d_last, None)):
        np.testing.assert_array_equal(a, e)


# -- a padded batch against each sequence alone ------------------------------------------
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("backend", ["fast", "ref"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_padded_batch_is_each_sequence_alone(rng, family, backend, dtype):
    mod = getattr(family, backend)
    lengths = [7, 3, 1, 0, 5]
    B, T, D, H = len(lengths), max(lengths), 3, 5
    p = family.problem(rng, B, T, D, H, dtype)
    mask = right_padded(lengths, T)
    outs = family.forward(mod, p, mask)
    finals = family.finals(outs)
    # gradients on the real steps only (what a layer passes: its output is zero on the
    # padding) and on the final states
    dhs = rng.standard_normal((B, T, H)).astype(dtype) * mask[..., None]
    d_last = [rng.standard_normal((B, H)).astype(dtype) for _ in p["states"]]
    grads = family.backward(mod, p, outs, dhs, d_last, mask)
    dx, d_states, d_weights = grads[0], grads[1:1 + len(d_last)], grads[1 + len(d_last):]
    sum_weights = [np.zeros_like(g) for g in d_weights]
    for b, n in enumerate(lengths):
        q = dict(p, x=np.ascontiguousarray(p["x"][b:b + 1, :n]),
                 states=[s[b:b + 1] for s in p["states"]])
        if n == 0:
            # nothing runs: the final states are the initial ones, and so are gradients
            for f, s in zip(finals, q["states"]):
                assert_close(f[b:b + 1], s, dtype)
            for g, d in zip(d_states, d_last):
                assert_close(g[b:b + 1], d[b:b + 1], dtype)
            assert not dx[b].any()
            continue
        o = family.forward(mod, q, None)
        for a, e in zip(outs, o):
            assert_close(a[b:b + 1, :n], e, dtype, 10)
        for f, e in zip(finals, family.finals(o)):
            assert_close(f[b:b + 1], e, dtype, 10)
        g = family.backward(mod, q, o, np.ascontiguousarray(dhs[b:b + 1, :n]),
                            [d[b:b + 1] for d in d_last], None)
        assert_close(dx[b:b + 1, :n], g[0], dtype, 10)
        assert not dx[b, n:].any()
        for a, e in zip(d_states, g[1:1 + len(d_last)]):
            assert_close(a[b:b + 1], e, dtype, 10)
        for acc, e in zip(sum_weights, g[1 + len(d_last):]):
            acc += e
    for a, e in zip(d_weights, sum_weights):
        assert_close(a, e, dtype, 100)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(B=st.integers(1, 6), T=st.integers(1, 9), D=st.integers(1, 5),
       H=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_fast_matches_reference_random_shapes(family, B, T, D, H, seed):
    rng = np.random.default_rng(seed)
    p = family.problem(rng, B, T, D, H, np.float64, dropout=bool(seed % 2))
    mask = rng.random((B, T)) > 0.5
    outs_ref = family.forward(family.ref, p, mask)
    outs = family.forward(family.fast, p, mask)
    for a, e in zip(outs, outs_ref):
        assert_close(a, e, np.float64, 10)
    dhs = rng.standard_normal((B, T, H))
    d_last = [rng.standard_normal((B, H)) for _ in p["states"]]
    for a, e in zip(family.backward(family.fast, p, outs, dhs, d_last, mask),
                    family.backward(family.ref, p, outs_ref, dhs, d_last, mask)):
        assert_close(a, e, np.float64, 10)


# -- the reference against finite differences --------------------------------------------
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("dropout", [False, True])
def test_reference_gradients_finite_differences(rng, family, dropout):
    B, T, D, H = 4, 5, 2, 3
    p = family.problem(rng, B, T, D, H, np.float64, dropout)
    mask = random_mask(rng, B, T)
    # every output carries a weight, padding too: the kernels' gradient is the exact one
    # of their function (a padded step's hs is h_{t-1} again)
    w_hs = rng.standard_normal((B, T, H))
    w_last = [rng.standard_normal((B, H)) for _ in p["states"]]

    def loss(q):
        outs = family.forward(family.ref, q, mask)
        return float(np.sum(w_hs * outs[0])
                     + sum(np.sum(w * f) for w, f in zip(w_last, family.finals(outs))))

    outs = family.forward(family.ref, p, mask)
    grads = family.backward(family.ref, p, outs, w_hs, w_last, mask)
    n = len(p["states"])
    named = [("x", grads[0])] + [(("states", i), grads[1 + i]) for i in range(n)]
    named += list(zip(["W_x", "W_h", "b"], grads[1 + n:]))
    for key, g in named:
        arr = p[key[0]][key[1]] if isinstance(key, tuple) else p[key]
        num = numeric_grad(lambda: loss(p), arr)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7, err_msg=str(key))


# -- the mask's checks ---------------------------------------------------------------------
BAD_MASKS = [
    (lambda B, T: np.ones((B, T + 1), bool), r"expected mask of shape \(B, T\) = \(2, 3\), "
                                             r"got \(2, 4\)"),
    (lambda B, T: np.ones((B,), bool), r"expected mask of shape .* got \(2,\)"),
    (lambda B, T: np.ones((B, T, 1), bool), r"expected mask of shape .* got \(2, 3, 1\)"),
    (lambda B, T: np.ones((B, T), np.float32), "expected mask to have dtype bool or uint8, "
                                               "got float32"),
    (lambda B, T: np.ones((B, T), np.int64), "expected mask to have dtype bool or uint8"),
    (lambda B, T: np.ones((T, B), bool).T, "expected mask to be C-contiguous"),
    (lambda B, T: [[True] * T] * B, "expected mask to be a numpy.ndarray, got list"),
]


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("backend", ["fast", "ref"])
@pytest.mark.parametrize("bad", range(len(BAD_MASKS)))
def test_bad_mask_raises(rng, family, backend, bad):
    mod = getattr(family, backend)
    make, message = BAD_MASKS[bad]
    B, T, D, H = 2, 3, 2, 4
    p = family.problem(rng, B, T, D, H, np.float64)
    with pytest.raises(ValueError, match=message):
        family.forward(mod, p, make(B, T))
    outs = family.forward(mod, p, None)
    with pytest.raises(ValueError, match=message):
        family.backward(mod, p, outs, None, [None] * len(p["states"]), make(B, T))


# == layers: mask= and lengths= ============================================================

LAYERS = {"SimpleRNN": lambda **kw: crnn.SimpleRNN(5, **kw),
          "LSTM": lambda **kw: crnn.LSTM(5, **kw),
          "GRU": lambda **kw: crnn.GRU(5, **kw),
          "GRU-before": lambda **kw: crnn.GRU(5, reset_after=False, **kw)}


def _n_states(layer):
    return len(layer.cell.state_names)


def _run_layer(layer, x, states, rng_R, **call):
    """Outputs and tape gradients (x, states, weights) of ``layer(x, states, **call)`` for
    the loss sum(out_i * R_i); ``rng_R`` makes the R (or is the list of them)."""
    def fn(x, *s):
        return layer(x, initial_state=list(s), **call)
    outs = fn(x, *states)
    outs = outs if isinstance(outs, list) else [outs]
    Rs = (rng_R if isinstance(rng_R, list)
          else [rng_R.standard_normal(o.shape) for o in outs])
    grads = tape_gradients(fn, [x, *states], layer.trainable_weights, Rs)
    return [np.asarray(o) for o in outs], grads, Rs


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_layer_padded_batch_is_each_sequence_alone(rng, kind, backend, go_backwards,
                                                   return_sequences, zero_output):
    lengths = np.array([6, 1, 0, 4])
    B, T, D = len(lengths), 6, 3
    layer = LAYERS[kind](return_sequences=return_sequences, return_state=True,
                         go_backwards=go_backwards, dtype="float64", backend=backend,
                         seed=1, zero_output_for_mask=zero_output)
    x = rng.standard_normal((B, T, D))
    states = [0.5 * rng.standard_normal((B, 5)) for _ in range(_n_states(layer))]
    outs, grads, Rs = _run_layer(layer, x, states, rng, lengths=lengths)
    n_s = len(states)
    dx, d_states, d_weights = grads[0], grads[1:1 + n_s], grads[1 + n_s:]
    sum_weights = [np.zeros_like(w) for w in d_weights]
    # the padded steps after a sequence's last real step (in processing order) repeat
    # its output, unless zero_output_for_mask; before its first real step they are zeros
    repeats = return_sequences and not zero_output and not go_backwards
    for b, n in enumerate(lengths):
        if return_sequences:
            # the real steps come first in processing order, which with go_backwards is
            # the padding first, then the sequence reversed
            real_steps = slice(T - n, T) if go_backwards else slice(0, n)
            pad_steps = slice(0, T - n) if go_backwards else slice(n, T)
            if not (repeats and n > 0):
                assert not outs[0][b, pad_steps].any()
        if n == 0:
            for f, s in zip(outs[1:], states):
                np.testing.assert_array_equal(f[b], s[b])
            assert not outs[0][b].any()     # no real step: no output (as Keras)
            assert not dx[b].any()
            continue
        xb = x[b:b + 1, :n]
        sb = [s[b:b + 1] for s in states]
        Rb = [R[b:b + 1, real_steps].copy() if (i == 0 and return_sequences)
              else R[b:b + 1] for i, R in enumerate(Rs)]
        if repeats:
            # a repeated output's gradient goes to the step it repeats
            Rb[0][:, -1] += Rs[0][b, pad_steps].sum(axis=0)
        o, g, _ = _run_layer(layer, xb, sb, Rb)
        if return_sequences:
            np.testing.assert_allclose(outs[0][b:b + 1, real_steps], o[0], atol=1e-12)
            if repeats:
                np.testing.assert_allclose(
                    outs[0][b, pad_steps], np.broadcast_to(o[0][0, -1], (T - n, 5)),
                    atol=1e-12)
        else:
            np.testing.assert_allclose(outs[0][b:b + 1], o[0], atol=1e-12)
        for f, e in zip(outs[1:], o[1:]):
            np.testing.assert_allclose(f[b:b + 1], e, atol=1e-12)
        np.testing.assert_allclose(dx[b:b + 1, :n], g[0], atol=1e-12)
        assert not dx[b, n:].any()
        for a, e in zip(d_states, g[1:1 + n_s]):
            np.testing.assert_allclose(a[b:b + 1], e, atol=1e-12)
        for acc, e in zip(sum_weights, g[1 + n_s:]):
            acc += e
    for a, e in zip(d_weights, sum_weights):
        np.testing.assert_allclose(a, e, atol=1e-10)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_mask_and_lengths_agree(rng, kind):
    B, T, D = 3, 5, 2
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = np.array([5, 2, 3])
    mask = right_padded(lengths, T)
    layer = LAYERS[kind](return_sequences=True, seed=0)
    a = layer(x, lengths=lengths)
    for m in (mask, mask.astype(np.int64), mask.astype(np.uint8)):
        np.testing.assert_array_equal(layer(x, mask=m), a)
    # an all-true mask is no mask at all
    np.testing.assert_array_equal(layer(x, mask=np.ones((B, T), bool)), layer(x))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_gradients_with_mask_finite_differences(rng, kind):
    # a mask with holes (not right-padding), both directions, float64
    B, T, D = 3, 5, 2
    mask = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 1]], bool)
    x = rng.standard_normal((B, T, D))
    for kwargs in (dict(return_sequences=True), dict(return_state=True),
                   dict(return_sequences=True, go_backwards=True)):
        layer = LAYERS[kind](dtype="float64", seed=2, **kwargs)
        check_gradients(lambda x: layer(x, mask=mask), [x], layer.trainable_weights, rng)
    bi = crnn.Bidirectional(LAYERS[kind](dtype="float64", seed=3, return_sequences=True))
    check_gradients(lambda x: bi(x, mask=mask), [x], bi.trainable_weights, rng)


BAD_LAYER_MASKS = [
    (dict(mask=np.ones((3, 4), bool)), r"expected mask of shape \(batch, time\) = "
                                       r"\(3, 5\), got \(3, 4\)"),
    (dict(mask=np.ones((5, 3), bool)), r"got \(5, 3\)"),
    (dict(mask=np.ones((3, 5, 1), bool)), r"got \(3, 5, 1\)"),
    (dict(mask=np.ones((3, 5), np.float32)), "expected mask to have dtype bool"),
    (dict(lengths=np.array([5, 2])), "expected lengths to be 3 ints"),
    (dict(lengths=np.array([5.0, 2.0, 1.0])), "expected lengths to be 3 ints"),
    (dict(lengths=np.array([6, 2, 1])), r"expected lengths in \[0, 5\]"),
    (dict(lengths=np.array([-1, 2, 1])), r"expected lengths in \[0, 5\]"),
    (dict(mask=np.ones((3, 5), bool), lengths=np.array([5, 2, 1])),
     "expected mask or lengths, not both"),
]


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bad", range(len(BAD_LAYER_MASKS)))
@pytest.mark.parametrize("wrapper", [False, True])
def test_layer_bad_mask_raises(rng, kind, bad, wrapper):
    kwargs, message = BAD_LAYER_MASKS[bad]
    layer = LAYERS[kind]()
    if wrapper:
        layer = crnn.Bidirectional(layer)
    with pytest.raises(ValueError, match=message):
        layer(rng.standard_normal((3, 5, 2)).astype(np.float32), **kwargs)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_bidirectional_with_holes_reads_the_real_steps(rng, kind):
    """A mask that is not right-padding: each direction runs over the real steps alone,
    in time order and in reverse; the padded steps output zeros."""
    B, T, D = 3, 6, 2
    mask = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    x = rng.standard_normal((B, T, D))
    bi = crnn.Bidirectional(LAYERS[kind](return_sequences=True, return_state=True,
                                         dtype="float64", seed=4))
    out, *finals = bi(x, mask=mask)
    assert not out[~mask].any()
    n_s = len(finals) // 2
    for b in range(B):
        real = np.flatnonzero(mask[b])
        alone, *alone_finals = bi(np.ascontiguousarray(x[b:b + 1, real]))
        np.testing.assert_allclose(out[b:b + 1, real], alone, atol=1e-12)
        for f, e in zip(finals, alone_finals):
            np.testing.assert_allclose(f[b:b + 1], e, atol=1e-12)
    assert n_s in (1, 2)


# -- against PyTorch's packed sequences --------------------------------------------------
def _torch_module(torch, kind, layer_f, layer_b, D, H):
    """The torch.nn module with crnn's weights (forward layer, and backward layer where
    given)."""
    bidirectional = layer_b is not None
    cls = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    module = cls(D, H, batch_first=True, bidirectional=bidirectional, dtype=torch.float64)
    with torch.no_grad():
        for suffix, layer in (("", layer_f), ("_reverse", layer_b)):
            if layer is None:
                continue
            kernel, recurrent, bias = layer.get_weights()
            if kind == "GRU":
                w_ih, w_hh, b_ih, b_hh = crnn.layers.gru.weights_to_torch(
                    [kernel, recurrent, bias])
            else:
                w_ih, w_hh, b_ih, b_hh = kernel.T, recurrent.T, bias, np.zeros_like(bias)
            for name, a in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh),
                            ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
                getattr(module, name + suffix).copy_(
                    torch.from_numpy(np.ascontiguousarray(a)))
    return module


def _torch_grads_as_crnn(kind, module, suffix):
    """The gradients of module's weights (one direction) in crnn's layout."""
    g = {n: getattr(module, n + suffix).grad.numpy()
         for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}
    if kind == "GRU":
        kernel, recurrent, bias = crnn.layers.gru.weights_from_torch(
            g["weight_ih_l0"], g["weight_hh_l0"], g["bias_ih_l0"], g["bias_hh_l0"])
        return [kernel, recurrent, bias]
    # the bias of the crnn layers is b_ih + b_hh: its gradient is either one's
    return [g["weight_ih_l0"].T, g["weight_hh_l0"].T, g["bias_ih_l0"]]


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_matches_torch_pack_padded_sequence(rng, kind, bidirectional, backend):
    torch = require_torch()
    lengths = np.array([7, 3, 1, 5, 7])
    B, T, D, H = len(lengths), 7, 3, 4
    make = {"SimpleRNN": crnn.SimpleRNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}[kind]
    # pad_packed_sequence outputs zeros at the padding: zero_output_for_mask (which
    # Bidirectional sets on its layers, as Keras does)
    inner = make(H, return_sequences=True, return_state=True, dtype="float64",
                 backend=backend, seed=5, zero_output_for_mask=not bidirectional)
    layer = crnn.Bidirectional(inner) if bidirectional else inner
    n_dir = 2 if bidirectional else 1
    n_s = 2 if kind == "LSTM" else 1
    x = rng.standard_normal((B, T, D))
    # states in crnn's order: forward [h, (c)], then backward [h, (c)]
    states = [0.5 * rng.standard_normal((B, H)) for _ in range(n_dir * n_s)]
    outs, grads, Rs = _run_layer(layer, x, states, rng, lengths=lengths)

    layer_f = layer.forward_layer if bidirectional else layer
    layer_b = layer.backward_layer if bidirectional else None
    module = _torch_module(torch, kind, layer_f, layer_b, D, H)
    tx = torch.from_numpy(x).requires_grad_(True)
    # torch's states: (directions, B, H) per kind of state
    t_states = [torch.from_numpy(np.stack([states[d * n_s + k] for d in range(n_dir)]))
                .requires_grad_(True) for k in range(n_s)]
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths),
                                                     batch_first=True,
                                                     enforce_sorted=False)
    t_out, t_fin = module(packed, tuple(t_states) if n_s == 2 else t_states[0])
    t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True,
                                                      total_length=T)
    t_fin = list(t_fin) if n_s == 2 else [t_fin]
    # crnn's finals in the same order as its states
    t_fin_crnn = [t_fin[k][d] for d in range(n_dir) for k in range(n_s)]
    loss = (t_out * torch.from_numpy(Rs[0])).sum()
    for f, R in zip(t_fin_crnn, Rs[1:]):
        loss = loss + (f * torch.from_numpy(R)).sum()
    loss.backward()

    np.testing.assert_allclose(outs[0], t_out.detach().numpy(), atol=1e-12)
    for f, e in zip(outs[1:], t_fin_crnn):
        np.testing.assert_allclose(f, e.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), atol=1e-12)
    t_dstates = [t_states[k].grad[d].numpy() for d in range(n_dir) for k in range(n_s)]
    for a, e in zip(grads[1:1 + len(states)], t_dstates):
        np.testing.assert_allclose(a, e, atol=1e-12)
    expected = _torch_grads_as_crnn(kind, module, "")
    if bidirectional:
        expected += _torch_grads_as_crnn(kind, module, "_reverse")
    for a, e in zip(grads[1 + len(states):], expected):
        np.testing.assert_allclose(a, e, atol=1e-12)


# == masks through models, and the loss ====================================================
def test_masking_layer(rng):
    x = rng.standard_normal((3, 4, 2))
    x[0, 2:] = 0.0
    x[1, 0] = 0.0
    x[1, 1, 0] = 0.0            # one feature at the mask value: still a real step
    x[2] = 0.0
    layer = crnn.Masking(dtype="float64")
    m = layer.compute_mask(x)
    np.testing.assert_array_equal(m, [[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(layer(x), x * m[..., None])
    g = rng.standard_normal(x.shape)
    layer(x)
    np.testing.assert_array_equal(layer.backward(g), g * m[..., None])
    y = np.full((2, 3, 1), -1.0)
    y[0, 0] = 5.0
    np.testing.assert_array_equal(crnn.Masking(mask_value=-1.0).compute_mask(y),
                                  [[1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="expected mask_value to be a number"):
        crnn.Masking(mask_value="0")
    assert repr(crnn.Masking(mask_value=-1.0)) == "Masking(mask_value=-1.0)"


def _ids(rng, lengths, T, V=7):
    ids = rng.integers(1, V, (len(lengths), T))
    ids[~right_padded(lengths, T)] = 0
    return ids


@pytest.mark.parametrize("build", ["sequential", "functional"])
def test_embedding_mask_reaches_the_recurrent_layer(rng, build):
    lengths = np.array([5, 2, 0, 3])
    T = 5
    ids = _ids(rng, lengths, T)
    emb = crnn.Embedding(7, 3, mask_zero=True, seed=0)
    lstm = crnn.LSTM(4, return_sequences=True, seed=1)
    drop = crnn.Dropout(0.5)
    head = crnn.TimeDistributed(crnn.Dense(2, seed=2))
    if build == "sequential":
        model = crnn.Sequential([emb, lstm, drop, head])
    else:
        inp = crnn.Input((T,), dtype="int64")
        model = crnn.Model(inp, head(drop(lstm(emb(inp)))))
    y = model(ids)
    # by hand: the LSTM called with the mask
    expected = head(lstm(emb(ids), mask=ids != 0))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(model.output_mask, ids != 0)
    # a many-to-one layer ends the mask
    model2 = crnn.Sequential([emb, crnn.GRU(4, seed=3), crnn.Dense(1)])
    model2(ids)
    assert model2.output_mask is None
    # go_backwards: the output is in reversed order, and so is its mask
    model3 = crnn.Sequential([emb, crnn.SimpleRNN(4, return_sequences=True,
                                                  go_backwards=True, seed=4)])
    model3(ids)
    np.testing.assert_array_equal(model3.output_mask, (ids != 0)[:, ::-1])


def test_masking_layer_reaches_bidirectional_in_a_graph(rng):
    lengths = np.array([6, 2, 4])
    T, D = 6, 3
    x = rng.standard_normal((3, T, D)) * right_padded(lengths, T)[..., None]
    inp = crnn.Input((T, D), dtype="float64")
    bi = crnn.Bidirectional(crnn.GRU(4, return_sequences=True, dtype="float64", seed=0))
    dense = crnn.Dense(1, dtype="float64", seed=1)
    model = crnn.Model(inp, dense(bi(crnn.Masking(dtype="float64")(inp))))
    y = model(x)
    np.testing.assert_array_equal(y, dense(bi(x, lengths=lengths)))
    np.testing.assert_array_equal(model.output_mask, right_padded(lengths, T))


def test_loss_counts_only_real_steps(rng):
    lengths = np.array([4, 1, 3])
    T = 4
    ids = _ids(rng, lengths, T)
    y = rng.standard_normal((3, T, 2))
    model = crnn.Sequential([crnn.Embedding(7, 3, mask_zero=True, seed=0, dtype="float64"),
                             crnn.SimpleRNN(5, return_sequences=True, seed=1,
                                            dtype="float64"),
                             crnn.Dense(2, seed=2, dtype="float64")])
    model.compile("sgd", "mse", metrics=["mae"])
    pred = model(ids)
    real = ids != 0
    per_step = np.mean((pred - y) ** 2, axis=-1)
    expected = per_step[real].sum() / real.sum()   # Keras: by the number of real steps
    loss, mae = model.evaluate(ids, y, verbose=0)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(mae, np.mean(np.abs(pred - y), axis=-1)[real].mean(),
                               rtol=1e-12)
    # with per-sample weights too: sum(w * l over real steps) / n_real
    w = np.array([1.0, 3.0, 0.5])
    loss_w = model.evaluate(ids, y, sample_weight=w, verbose=0)[0]
    np.testing.assert_allclose(loss_w, (per_step * w[:, None])[real].sum() / real.sum(),
                               rtol=1e-12)
    # the padded steps' targets do not matter
    y2 = y.copy()
    y2[~real] = 1e6
    np.testing.assert_allclose(model.evaluate(ids, y2, verbose=0)[0], loss, rtol=1e-12)
    # nothing real: a loss of 0, no NaN
    zero = np.zeros_like(ids)
    assert model.evaluate(zero, y, verbose=0)[0] == 0.0


def test_apply_mask():
    m = np.array([[True, False], [True, True]])
    w = crnn.losses.apply_mask(None, m, (2, 2), np.float64)
    np.testing.assert_allclose(w, [[4 / 3, 0], [4 / 3, 4 / 3]])
    w = crnn.losses.apply_mask(np.array([1.0, 2.0]), m, (2, 2), np.float64)
    np.testing.assert_allclose(w, [[4 / 3, 0], [8 / 3, 8 / 3]])
    nothing = np.zeros((2, 2), bool)
    assert crnn.losses.apply_mask(None, nothing, (2, 2), np.float32).sum() == 0
    with pytest.raises(ValueError, match=r"expected a mask of shape \(2, 3\)"):
        crnn.losses.apply_mask(None, m, (2, 3), np.float64)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_whole_model_gradient_with_mask_finite_differences(rng, kind):
    """Masking -> Bidirectional(recurrent, sequences) -> recurrent (sequences) ->
    TimeDistributed(Dense) with a masked mse: the gradient a training step applies (SGD,
    learning rate 1) against central differences of evaluate's loss, float64."""
    make = {"SimpleRNN": crnn.SimpleRNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}[kind]
    lengths = np.array([5, 2, 4, 1])
    T, D = 5, 2
    x = rng.standard_normal((4, T, D)) * right_padded(lengths, T)[..., None]
    y = rng.standard_normal((4, T, 1))
    inp = crnn.Input((T, D), dtype="float64")
    h = crnn.Masking(dtype="float64")(inp)
    h = crnn.Bidirectional(make(3, return_sequences=True, dtype="float64", seed=0))(h)
    h = make(3, return_sequences=True, go_backwards=False, dtype="float64", seed=1)(h)
    out = crnn.TimeDistributed(crnn.Dense(1, dtype="float64", seed=2))(h)
    model = crnn.Model(inp, out)
    model.compile(crnn.optimizers.SGD(learning_rate=1.0), "mse")
    before = model.get_weights()
    model.train_on_batch(x, y)
    after = model.get_weights()
    grads = [b - a for b, a in zip(before, after)]
    model.set_weights(before)
    eps = 1e-6
    for w, g in zip(model.trainable_weights, grads):
        for i in rng.choice(w.size, min(w.size, 4), replace=False):
            old = w.flat[i]
            w.flat[i] = old + eps
            up = model.evaluate(x, y, verbose=0)
            w.flat[i] = old - eps
            down = model.evaluate(x, y, verbose=0)
            w.flat[i] = old
            np.testing.assert_allclose(g.flat[i], (up - down) / (2 * eps), rtol=1e-5,
                                       atol=1e-9)


def test_subclassed_model_passes_mask_by_hand(rng):
    class Tagger(crnn.Model):
        def __init__(self):
            super().__init__()
            self.emb = crnn.Embedding(7, 3, seed=0)
            self.rnn = crnn.GRU(4, return_sequences=True, seed=1)
            self.out = crnn.Dense(1, seed=2)

        def call(self, ids, training=False):
            mask = np.asarray(ids) != 0
            self.output_mask = mask           # for the loss
            return self.out(self.rnn(self.emb(ids), mask=mask, training=training))

    lengths = np.array([4, 2])
    ids = _ids(rng, lengths, 4)
    y = rng.standard_normal((2, 4, 1)).astype(np.float32)
    model = Tagger()
    model.compile("sgd", "mse")
    pred = model(ids)
    real = ids != 0
    expected = np.mean((pred - y) ** 2, axis=-1)[real].mean()
    np.testing.assert_allclose(model.evaluate(ids, y, verbose=0), expected, rtol=1e-6)
    model.fit(ids, y, epochs=1, verbose=0)   # trains


def test_readme_masking_example_runs():
    from test_readme import block_after
    exec(compile(block_after("<!-- readme-example: masking -->"), "README.md", "exec"), {})
