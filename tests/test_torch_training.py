"""The same model trained by crnn (compile + train_on_batch) and by PyTorch from the same
initial weights on the same batches: losses and weights agree after hundreds of steps.

float64 on both sides, so that what is compared is the arithmetic of BPTT and the update
rules, not float32 rounding. Adam's epsilon is made negligible on both sides (Keras adds
it to sqrt(v) after the bias correction is folded into the learning rate, PyTorch before:
the two formulas differ by epsilon's scale only).
"""
import numpy as np
import pytest

import crnn
from conftest import require_torch
from crnn.layers.gru import weights_to_torch

STEPS = 300
B, T, D, H = 16, 8, 3, 6


def data(rng):
    """A learnable task: the running mean of the first feature, read at the end, and the
    sign of the second feature's sum."""
    x = rng.standard_normal((4 * B, T, D))
    y = np.stack([x[:, :, 0].mean(axis=1), np.tanh(x[:, :, 1].sum(axis=1))], axis=1)
    return x, y


def crnn_model(cell):
    rnn = {"simple_rnn": crnn.SimpleRNN(H, seed=1, dtype="float64"),
           "lstm": crnn.LSTM(H, seed=1, dtype="float64"),
           "gru": crnn.GRU(H, seed=1, dtype="float64")}[cell]
    return crnn.Sequential([crnn.Input((T, D), dtype="float64"), rnn,
                            crnn.Dense(2, seed=2, dtype="float64")])


def torch_model(torch, cell, model):
    rnn_layer, dense = model.layers
    kernel, recurrent, bias = rnn_layer.get_weights()
    if cell == "gru":
        w_ih, w_hh, b_ih, b_hh = weights_to_torch([kernel, recurrent, bias])
        rnn = torch.nn.GRU(D, H, batch_first=True)
    else:
        w_ih, w_hh, b_ih, b_hh = kernel.T, recurrent.T, bias, np.zeros_like(bias)
        rnn = (torch.nn.RNN(D, H, batch_first=True) if cell == "simple_rnn"
               else torch.nn.LSTM(D, H, batch_first=True))
    rnn = rnn.double()
    linear = torch.nn.Linear(H, 2).double()
    with torch.no_grad():
        for p, v in zip([rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0],
                        [w_ih, w_hh, b_ih, b_hh]):
            p.copy_(torch.from_numpy(np.ascontiguousarray(v)))
        w, b = dense.get_weights()
        linear.weight.copy_(torch.from_numpy(w.T.copy()))
        linear.bias.copy_(torch.from_numpy(b))

    def forward(x):
        out, _ = rnn(x)
        return linear(out[:, -1])
    return forward, [rnn, linear]


@pytest.mark.parametrize("cell,optimizer", [("simple_rnn", "sgd"), ("simple_rnn", "adam"),
                                            ("lstm", "sgd"), ("lstm", "adam"),
                                            ("gru", "adam")])
def test_training_matches_pytorch(rng, cell, optimizer):
    torch = require_torch()
    x, y = data(rng)
    model = crnn_model(cell)
    forward, modules = torch_model(torch, cell, model)
    params = [p for m in modules for p in m.parameters()]
    if cell != "gru":
        # PyTorch's second bias stays zero: crnn's one bias gets the gradient once, not
        # twice (each of PyTorch's two biases would take a step of its own)
        modules[0].bias_hh_l0.requires_grad_(False)
        params = [p for p in params if p.requires_grad]
    if optimizer == "sgd":
        model.compile(crnn.optimizers.SGD(learning_rate=0.05, momentum=0.9), loss="mse")
        t_opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    else:
        model.compile(crnn.optimizers.Adam(learning_rate=0.01, epsilon=1e-14), loss="mse")
        t_opt = torch.optim.Adam(params, lr=0.01, eps=1e-14)
    losses, t_losses = [], []
    for step in range(STEPS):
        i = (step % 4) * B
        xb, yb = x[i:i + B], y[i:i + B]
        losses.append(float(model.train_on_batch(xb, yb)))
        t_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(forward(torch.from_numpy(xb)),
                                            torch.from_numpy(yb))
        loss.backward()
        t_opt.step()
        t_losses.append(loss.item())
    np.testing.assert_allclose(losses, t_losses, rtol=1e-6, atol=1e-9)
    assert losses[-1] < 0.5 * losses[0]   # and it learned something
    # the weights after training, compared in crnn's layout
    rnn, linear = modules
    w_ih, w_hh = rnn.weight_ih_l0.detach().numpy(), rnn.weight_hh_l0.detach().numpy()
    b_ih, b_hh = rnn.bias_ih_l0.detach().numpy(), rnn.bias_hh_l0.detach().numpy()
    kernel, recurrent, bias = model.layers[0].get_weights()
    if cell == "gru":
        expected = weights_to_torch([kernel, recurrent, bias])
        for a, e in zip(expected, (w_ih, w_hh, b_ih, b_hh)):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_allclose(kernel, w_ih.T, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(recurrent, w_hh.T, rtol=1e-6, atol=1e-9)
        # crnn has one bias where PyTorch has two: only their sum is determined
        np.testing.assert_allclose(bias, b_ih + b_hh, rtol=1e-6, atol=1e-9)
    w, b = model.layers[1].get_weights()
    np.testing.assert_allclose(w, linear.weight.detach().numpy().T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b, linear.bias.detach().numpy(), rtol=1e-6, atol=1e-9)
