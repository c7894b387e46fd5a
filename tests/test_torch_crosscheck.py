"""PyTorch as outside referee: torch.nn.RNN with the same weights must give the same
outputs, final state and every gradient. Skipped without torch unless
CRNN_REQUIRE_TORCH=1, when a missing torch fails."""
import numpy as np
import pytest

import crnn
from conftest import assert_close, require_torch

SHAPES = [(1, 1, 1, 1), (3, 7, 4, 5), (8, 30, 16, 9), (5, 60, 3, 32)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%d-T%d-D%d-H%d" % s)
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_simple_rnn_matches_torch(dtype, activation, shape, backend):
    torch = require_torch()
    B, T, D, H = shape
    rng = np.random.default_rng(sum(shape))
    layer = crnn.SimpleRNN(H, activation=activation, return_sequences=True, return_state=True,
                           seed=sum(shape), dtype=np.dtype(dtype).name, backend=backend)
    layer.build((B, T, D))
    kernel, recurrent, bias = layer.get_weights()
    layer.set_weights([kernel, 0.9 * recurrent, 0.1 * rng.standard_normal(H)])
    kernel, recurrent, bias = layer.get_weights()

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    rnn = torch.nn.RNN(D, H, nonlinearity=activation, batch_first=True, dtype=tdtype)
    with torch.no_grad():  # PyTorch keeps W transposed and two biases; crnn has one
        rnn.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(bias))
        rnn.bias_hh_l0.zero_()

    x = rng.standard_normal((B, T, D)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    g_out = rng.standard_normal((B, T, H)).astype(dtype)
    g_h = rng.standard_normal((B, H)).astype(dtype)

    out, h_last = layer(x, initial_state=[h0])
    dx = layer.backward([g_out, g_h])
    dW_x, dW_h, db = layer.get_gradients()

    tx = torch.from_numpy(x).requires_grad_(True)
    th0 = torch.from_numpy(h0)[None].requires_grad_(True)  # (layers, B, H)
    t_out, t_h = rnn(tx, th0)
    (t_out * torch.from_numpy(g_out)).sum().add((t_h[0] * torch.from_numpy(g_h)).sum()).backward()

    assert_close(out, t_out.detach().numpy(), dtype, scale=10)
    assert_close(h_last, t_h[0].detach().numpy(), dtype, scale=10)
    assert_close(dx, tx.grad.numpy(), dtype, scale=10)
    assert_close(layer.initial_state_grad[0], th0.grad[0].numpy(), dtype, scale=10)
    assert_close(dW_x, rnn.weight_ih_l0.grad.numpy().T, dtype, scale=10)
    assert_close(dW_h, rnn.weight_hh_l0.grad.numpy().T, dtype, scale=10)
    assert_close(db, rnn.bias_ih_l0.grad.numpy(), dtype, scale=10)
    assert_close(db, rnn.bias_hh_l0.grad.numpy(), dtype, scale=10)


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
