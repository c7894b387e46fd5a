"""The GRU's training passes on the packed GEMM (float32, reset_after): gru_forward's
products and gru_backward's per-step product with W_h^T run on _lstm's pool when forced
(_force_path("packed")) or, by size, while crnn computes (crnn.cores.computing); they must
match the NumPy reference forward and backward as the BLAS path does."""
import contextlib

import numpy as np
import pytest

from conftest import assert_close
from crnn import _gru as fast, cores
from kernel_cases import BY_ID, output_grads, problem

GRU = BY_ID["gru"]  # reset_after=True


@pytest.fixture
def gru_path():
    yield fast._force_path
    fast._force_path(None)


def fast_and_reference(args, real, given):
    """Forward and backward of both backends (the backward fed the reference's forward,
    as test_kernels does): ``(outs, grads)`` of each."""
    B, T, _ = args["x"].shape
    H = args["h0"].shape[1]
    dhs, lasts = output_grads(GRU, np.random.default_rng(B + T), B, T, H, np.float32, given)
    out_ref = GRU.forward("reference", args, mask=real)
    out_fast = GRU.forward("cython", args, mask=real)
    g_ref = GRU.backward("reference", args, out_ref, dhs, lasts, mask=real)
    g_fast = GRU.backward("cython", args, out_ref, dhs, lasts, mask=real)
    return (out_fast, g_fast), (out_ref, g_ref)


@pytest.mark.parametrize("how", ["forced", "by size while computing"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (13, 4, 5, 70), (64, 6, 40, 64)])
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("given", [(True, True), (True, False), (False, True)],
                         ids=["both", "sequence", "last"])
def test_packed_training_matches_reference(gru_path, how, shape, dropout, padded, given):
    rng = np.random.default_rng(sum(shape) + 7 * dropout + 3 * padded)
    B, T, D, H = shape
    args = problem(GRU, rng, B, T, D, H, np.float32, mask=dropout)
    real = rng.random((B, T)) < 0.7 if padded else None
    if how == "forced":
        gru_path("packed")
        scope = contextlib.nullcontext()
    else:
        scope = cores.computing()
    with scope:
        if how != "forced":
            assert fast._packed_product(B, H, False) == (B * 3 * H * H >= 2 ** 17)
        (out_fast, g_fast), (out_ref, g_ref) = fast_and_reference(args, real, given)
    for name, a, e in zip(GRU.outputs, out_fast, out_ref):
        assert_close(a, e, np.float32, err_msg=name)
    for name, a, e in zip(GRU.params, g_fast, g_ref):
        assert a.shape == args[name].shape and a.dtype == np.float32, "d" + name
        assert_close(a, e, np.float32, err_msg="d" + name)


def test_packed_backward_differs_from_blas_only_in_rounding(gru_path):
    args = problem(GRU, np.random.default_rng(3), 64, 5, 48, 128, np.float32)
    results = []
    for path in ("packed", "blas"):
        gru_path(path)
        results.append(fast_and_reference(args, None, (True, False))[0][1])
    for name, a, e in zip(GRU.params, *results):
        assert_close(a, e, np.float32, err_msg="d" + name)


def test_outside_crnns_computations_training_stays_on_blas():
    # without computing(), OpenBLAS may run multi-threaded: its idle workers would spin
    # beside the pool, so only inference goes packed
    assert not fast._packed_product(64, 256, False)
    assert fast._packed_product(64, 256, True)
    with cores.computing():
        assert fast._packed_product(64, 256, False)
