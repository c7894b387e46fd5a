"""crnn.interop.from_torch / to_torch: PyTorch's nn.RNN, nn.LSTM and nn.GRU to crnn and
back, every combination of cell, num_layers, bidirectional and bias, outputs and final
states equal in float64 (1e-12). Skipped without torch unless CRNN_REQUIRE_TORCH=1."""
import subprocess
import sys

import numpy as np
import pytest

import crnn
from conftest import assert_close, require_torch
from crnn.interop import from_torch, to_torch

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
TOL = 1e-12


def _module(torch, cell, num_layers, bidirectional, bias, batch_first, D=5, H=4,
            dropout=0.0):
    kind, _, nonlinearity = cell.partition("-")
    options = {"nonlinearity": nonlinearity} if nonlinearity else {}
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    torch.manual_seed(num_layers * 8 + bidirectional * 4 + bias * 2 + batch_first)
    module = cls(D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                 batch_first=batch_first, dropout=dropout, **options).double()
    with torch.no_grad():   # biases well away from zero, so that a lost one shows
        for name, p in module.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-1, 1)
    return module.eval()


def _run_torch(torch, module, x):
    """``(output (B, T, ...), h_n, c_n or None)`` of a module on batch-first ``x``."""
    t = torch.from_numpy(x if module.batch_first else np.ascontiguousarray(
        x.transpose(1, 0, 2)))
    with torch.no_grad():
        out, finals = module(t)
    out = out.numpy()
    if not module.batch_first:
        out = out.transpose(1, 0, 2)
    h, c = finals if isinstance(finals, tuple) else (finals, None)
    return out, h.numpy(), None if c is None else c.numpy()


def _split_states(states, lstm):
    """crnn's final states, layer by layer and forward before backward, as PyTorch's
    ``(h_n, c_n)``."""
    if lstm:
        return np.stack(states[0::2]), np.stack(states[1::2])
    return np.stack(states), None


def _close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL)


COMBOS = [(cell, L, bi, bias) for cell in CELLS for L in (1, 2, 3) for bi in (False, True)
          for bias in (False, True)]


def _ids(combo):
    cell, L, bi, bias = combo
    return f"{cell}-L{L}-{'bi' if bi else 'uni'}-{'bias' if bias else 'nobias'}"


@pytest.mark.parametrize("combo", COMBOS, ids=_ids)
def test_from_torch_equals_the_module(combo):
    """A PyTorch module's crnn twin: same output, same h_n (and c_n)."""
    torch = require_torch()
    cell, L, bi, bias = combo
    batch_first = (L + bias) % 2 == 0           # both layouts over the combinations
    module = _module(torch, cell, L, bi, bias, batch_first)
    x = np.random.default_rng(L).standard_normal((3, 6, 5))
    out, h_n, c_n = _run_torch(torch, module, x)

    plain = from_torch(module)
    expected_type = ((crnn.Bidirectional if bi else crnn.layers.RNN) if L == 1
                     else crnn.Sequential)
    assert isinstance(plain, expected_type)
    assert all(w.dtype == np.float64 for w in plain.get_weights())
    _close(plain(x), out)

    with_states = from_torch(module, return_state=True)
    result = with_states(x)
    _close(result[0], out)
    h, c = _split_states(result[1:], cell == "lstm")
    _close(h, h_n)
    if c_n is not None:
        _close(c, c_n)
    # the module's parameters, less bias_hh where crnn keeps one bias (its sum with bias_ih)
    gates = {"rnn": 1, "lstm": 4, "gru": 0}[cell.partition("-")[0]]
    merged = bias * L * (1 + bi) * gates * module.hidden_size
    assert with_states.count_params() == sum(p.numel() for p in module.parameters()) - merged


def _crnn_stack(cell, L, bi, bias, seed, D=5, H=4):
    """A crnn functional chain of ``L`` layers returning ``[output, *states]``, with
    crnn's own random weights (biases nonzero)."""
    kind, _, activation = cell.partition("-")
    cls = {"rnn": crnn.SimpleRNN, "lstm": crnn.LSTM, "gru": crnn.GRU}[kind]
    options = {"activation": activation} if activation else {}
    x = inputs = crnn.Input((None, D), dtype="float64")
    states = []
    for k in range(L):
        layer = cls(H, use_bias=bias, return_sequences=True, return_state=True,
                    bias_initializer="random_normal", seed=seed + k, dtype="float64",
                    **options)
        if bi:
            layer = crnn.Bidirectional(layer)
        out = layer(x)
        x, states = out[0], states + list(out[1:])
    return crnn.Model(inputs, [x] + states)


@pytest.mark.parametrize("combo", COMBOS, ids=_ids)
def test_to_torch_equals_the_crnn_model(combo):
    """crnn's layers as a PyTorch module: same output and final states; and the round
    trip gives back the same weights."""
    torch = require_torch()
    cell, L, bi, bias = combo
    model = _crnn_stack(cell, L, bi, bias, seed=L * 4 + bi * 2 + bias)
    x = np.random.default_rng(L + 10).standard_normal((2, 7, 5))
    result = model(x)
    batch_first = (L + bi) % 2 == 0
    module = to_torch(model, batch_first=batch_first)
    assert module.batch_first == batch_first and module.num_layers == L
    assert module.bidirectional == bi and module.bias == bias
    assert next(module.parameters()).dtype == torch.float64
    out, h_n, c_n = _run_torch(torch, module.eval(), x)
    _close(out, result[0])
    h, c = _split_states(result[1:], cell == "lstm")
    _close(h_n, h)
    if c_n is not None:
        _close(c_n, c)
    back = from_torch(module, return_state=True)
    for a, b in zip(back.get_weights(), model.get_weights()):
        _close(a, b)
    _close(back(x)[0], result[0])


def test_a_single_layer_and_a_sequential_go_to_torch(rng):
    """A lone layer, and a Sequential with Dropout between its layers (the module's
    dropout), convert; a return_sequences=False last layer is the module's last step."""
    torch = require_torch()
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    layer = crnn.GRU(6, seed=1, bias_initializer="random_normal")
    y = layer(x)
    module = to_torch(layer)
    assert isinstance(module, torch.nn.GRU)
    out, h_n, _ = _run_torch(torch, module, x)
    assert_close(out[:, -1], y, np.float32)
    assert_close(h_n[0], y, np.float32)

    model = crnn.Sequential([crnn.LSTM(4, return_sequences=True, seed=2),
                             crnn.Dropout(0.25),
                             crnn.LSTM(4, return_sequences=True, seed=3)])
    y = model.predict(x, verbose=0)
    module = to_torch(model)
    assert module.dropout == 0.25 and module.num_layers == 2
    out, _, _ = _run_torch(torch, module.eval(), x)
    assert_close(out, y, np.float32)
    back = from_torch(module)
    assert [type(layer).__name__ for layer in back.layers] == ["LSTM", "Dropout", "LSTM"]
    assert back.layers[1].rate == 0.25
    assert_close(back.predict(x, verbose=0), y, np.float32)


def test_float32_modules_give_float32_layers(rng):
    torch = require_torch()
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 5, batch_first=True)
    layer = from_torch(module)
    assert layer.dtype == np.float32 and isinstance(layer, crnn.LSTM)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    assert_close(layer(x), expected, np.float32)
    assert from_torch(module, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match="float32 or float64 parameters, got float16"):
        from_torch(module.half())
    half = from_torch(module, dtype="float32")
    assert half.dtype == np.float32


def test_what_pytorch_cannot_hold_is_refused():
    torch = require_torch()
    x = np.zeros((1, 2, 3), dtype=np.float32)

    def built(layer):
        layer(x)
        return layer

    cases = [
        (built(crnn.GRU(4, reset_after=False)), "reset_after=True"),
        (built(crnn.SimpleRNN(4, activation="sigmoid")), "'tanh' or 'relu'"),
        (built(crnn.LSTM(4, recurrent_activation="tanh")), "recurrent_activation"),
        (built(crnn.LSTM(4, go_backwards=True)), "go_backwards"),
        (built(crnn.Bidirectional(crnn.LSTM(4), merge_mode="sum")), "merge_mode='concat'"),
        (built(crnn.LSTM(4, dropout=0.2)), "recurrent_dropout=0"),
        (built(crnn.LSTM(4, stateful=True)), "stateful=False"),
        (crnn.LSTM(4), "a built layer"),
        (crnn.Dense(3), "SimpleRNN, LSTM or GRU"),
        (crnn.Sequential([crnn.LSTM(4, return_sequences=True), crnn.GRU(4)]),
         "one kind and configuration"),
        (crnn.Sequential([crnn.LSTM(4, return_sequences=True), crnn.Dense(2)]),
         "Dense 'dense"),
        (crnn.Sequential([crnn.LSTM(4), crnn.LSTM(4)]), "return_sequences=True for layer 0"),
        (crnn.Sequential([crnn.LSTM(4, return_sequences=True),
                          crnn.Bidirectional(crnn.LSTM(2))]), "bidirectional"),
        (crnn.Sequential([crnn.LSTM(4, return_sequences=True), crnn.LSTM(5)]),
         "configuration"),
    ]
    for obj, message in cases:
        if isinstance(obj, crnn.Sequential):
            try:
                obj.predict(x, verbose=0)
            except ValueError:
                pass
        with pytest.raises(ValueError, match=message):
            to_torch(obj)
    with pytest.raises(ValueError, match="proj_size=0"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="nn.RNN, nn.LSTM or nn.GRU"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="nn.RNN, nn.LSTM or nn.GRU"):
        from_torch(torch.nn.LSTMCell(3, 4))


def test_interop_imports_without_torch():
    """``import crnn.interop`` works where torch is missing; calling says what to
    install."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import crnn.interop\n"
            "try:\n"
            "    crnn.interop.to_torch(None)\n"
            "except ImportError as e:\n"
            "    print('IMPORT', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORT" in done.stdout and "pip install torch" in done.stdout
