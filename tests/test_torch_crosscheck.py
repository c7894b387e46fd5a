"""PyTorch as outside referee: torch.nn.RNN / LSTM / GRU with the same weights must give
the same outputs, final states and every gradient. Skipped without torch unless
CRNN_REQUIRE_TORCH=1, when a missing torch fails."""
import numpy as np
import pytest

import crnn
from conftest import assert_close, require_torch

SHAPES = [(1, 1, 1, 1), (3, 7, 4, 5), (8, 30, 16, 9), (5, 60, 3, 32)]


def test_weights_exported_to_torch_run_there(rng):
    """Weights trained in crnn load into torch.nn.RNN (the deployment direction)."""
    torch = require_torch()
    layer = crnn.SimpleRNN(6, seed=0)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y = layer(x)
    kernel, recurrent, bias = layer.get_weights()
    rnn = torch.nn.RNN(3, 6, batch_first=True)
    rnn.load_state_dict({"weight_ih_l0": torch.from_numpy(kernel.T.copy()),
                         "weight_hh_l0": torch.from_numpy(recurrent.T.copy()),
                         "bias_ih_l0": torch.from_numpy(bias),
                         "bias_hh_l0": torch.zeros(6)})
    with torch.no_grad():
        _, h = rnn(torch.from_numpy(x))
    assert_close(y, h[0].numpy(), np.float32, scale=10)


def _torch_run(torch, module, x, states, grads):
    """Run ``module`` (batch_first) from ``states`` (a tuple of (B, H) arrays), backprop
    ``sum(out * g_out) + sum(final_i * g_i)``; return outputs, finals and input grads."""
    tx = torch.from_numpy(x).requires_grad_(True)
    ts = [torch.from_numpy(s)[None].requires_grad_(True) for s in states]  # (layers, B, H)
    t_out, t_fin = module(tx, ts[0] if len(ts) == 1 else tuple(ts))
    t_fin = [t_fin] if len(ts) == 1 else list(t_fin)
    loss = (t_out * torch.from_numpy(grads[0])).sum()
    for f, g in zip(t_fin, grads[1:]):
        loss = loss + (f[0] * torch.from_numpy(g)).sum()
    loss.backward()
    return (t_out.detach().numpy(), [f[0].detach().numpy() for f in t_fin], tx.grad.numpy(),
            [s.grad[0].numpy() for s in ts])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%d-T%d-D%d-H%d" % s)
@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("cell", ["simple_rnn-tanh", "simple_rnn-relu", "lstm", "gru"])
def test_layers_match_torch(dtype, shape, backend, cell):
    from crnn.layers.gru import weights_from_torch, weights_to_torch
    torch = require_torch()
    B, T, D, H = shape
    family, _, activation = cell.partition("-")
    rng = np.random.default_rng(sum(shape) + len(cell))
    Layer = {"simple_rnn": crnn.SimpleRNN, "lstm": crnn.LSTM, "gru": crnn.GRU}[family]
    options = {"activation": activation} if activation else {}
    layer = Layer(H, return_sequences=True, return_state=True, seed=sum(shape),
                  dtype=np.dtype(dtype).name, backend=backend, **options)
    layer.build((B, T, D))
    kernel, recurrent, bias = layer.get_weights()
    layer.set_weights([kernel, 0.9 * recurrent, 0.1 * rng.standard_normal(bias.shape)])
    weights = layer.get_weights()

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    if family == "gru":  # gates z, r, h -> r, z, n; transposed; bias rows: the two biases
        module = torch.nn.GRU(D, H, batch_first=True, dtype=tdtype)
        arrays = weights_to_torch(weights)
    else:  # same gate order (LSTM i, f, g, o); transposed; one bias where torch has two
        module = (torch.nn.LSTM(D, H, batch_first=True, dtype=tdtype) if family == "lstm"
                  else torch.nn.RNN(D, H, nonlinearity=activation, batch_first=True,
                                    dtype=tdtype))
        arrays = (weights[0].T, weights[1].T, weights[2], np.zeros_like(weights[2]))
    params = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0]
    with torch.no_grad():
        for p, a in zip(params, arrays):
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))

    n = 2 if family == "lstm" else 1
    x = rng.standard_normal((B, T, D)).astype(dtype)
    states = [rng.standard_normal((B, H)).astype(dtype) for _ in range(n)]
    grads = [rng.standard_normal((B, T, H)).astype(dtype)] + [
        rng.standard_normal((B, H)).astype(dtype) for _ in range(n)]

    out, *finals = layer(x, initial_state=states)
    dx = layer.backward(grads)
    t_out, t_finals, t_dx, t_dstates = _torch_run(torch, module, x, states, grads)

    assert_close(out, t_out, dtype, scale=10)
    for a, e in zip(finals, t_finals):
        assert_close(a, e, dtype, scale=10)
    assert_close(dx, t_dx, dtype, scale=10)
    for a, e in zip(layer.initial_state_grad, t_dstates):
        assert_close(a, e, dtype, scale=10)
    t_grads = [p.grad.numpy() for p in params]
    if family == "gru":
        expected = weights_from_torch(*t_grads)
    else:
        expected = [t_grads[0].T, t_grads[1].T, t_grads[2]]
        assert_close(t_grads[3], t_grads[2], dtype, scale=10)  # both biases get the same
    for name, a, e in zip(["kernel", "recurrent_kernel", "bias"], layer.get_gradients(),
                          expected):
        assert_close(a, e, dtype, scale=10, err_msg=name)


def test_gru_weight_conversion_round_trips(rng):
    from crnn.layers.gru import weights_from_torch, weights_to_torch
    D, H = 3, 4
    w = [rng.standard_normal((D, 3 * H)), rng.standard_normal((H, 3 * H)),
         rng.standard_normal((2, 3 * H))]
    w_ih, w_hh, b_ih, b_hh = weights_to_torch(w)
    assert w_ih.shape == (3 * H, D) and w_hh.shape == (3 * H, H)
    # PyTorch's first block is r: Keras's second block (z, r, h)
    np.testing.assert_array_equal(w_ih[:H], w[0][:, H:2 * H].T)
    np.testing.assert_array_equal(b_hh[2 * H:], w[2][1, 2 * H:])
    for a, e in zip(weights_from_torch(w_ih, w_hh, b_ih, b_hh), w):
        np.testing.assert_array_equal(a, e)
    with pytest.raises(ValueError, match=r"bias \(2, 3H\)"):
        weights_to_torch([w[0], w[1], np.zeros(3 * H)])
