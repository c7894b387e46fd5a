"""PyTorch's recurrent modules to crnn layers and back, the weights copied.

``nn.RNN`` (``nonlinearity`` tanh or relu), ``nn.LSTM`` and ``nn.GRU`` stack
``num_layers`` layers, each one- or two-directional, with one ``hidden_size`` ``H`` for
all. crnn holds the same as one layer (``SimpleRNN``, ``LSTM``, ``GRU``), wrapped in
``Bidirectional`` (``merge_mode="concat"``: PyTorch concatenates the directions) where
bidirectional, and a ``Sequential`` of those for several layers (with ``Dropout`` between
them where the module has ``dropout > 0``).

The weights of layer ``k`` (suffix ``_reverse`` for the backward direction), PyTorch's
against crnn's (Keras's layout, :mod:`crnn.layers.lstm`, :mod:`crnn.layers.gru`)::

    weight_ih_l{k} (G*H, D_k) = kernel.T          weight_hh_l{k} (G*H, H) = recurrent_kernel.T
    bias_ih_l{k} + bias_hh_l{k} = bias            (SimpleRNN, LSTM: one bias in crnn)
    GRU: gate blocks r, z, n against z, r, h; bias_ih, bias_hh = bias[0], bias[1]
         (crnn.layers.gru.weights_to_torch / weights_from_torch)

``D_0`` is ``input_size``, ``D_k = H * directions`` above it. PyTorch's GRU is crnn's
``GRU(reset_after=True)``; a ``reset_after=False`` GRU has no PyTorch twin. crnn is
batch-first: a module with ``batch_first=False`` reads ``(T, B, D)`` where the crnn model
reads ``(B, T, D)``.

torch is imported only when one of these functions is called: ``import crnn.interop``
works without it.
"""
import numpy as np

from crnn import engine
from crnn.layers import GRU, LSTM, Bidirectional, Dropout, SimpleRNN
from crnn.layers.gru import weights_from_torch, weights_to_torch
from crnn.layers.recurrent import RNN
from crnn.models import Model, Sequential

__all__ = ["from_torch", "to_torch"]

# PyTorch's RNNBase.mode -> (crnn layer class, its options)
_FROM_MODE = {
    "RNN_TANH": (SimpleRNN, {"activation": "tanh"}),
    "RNN_RELU": (SimpleRNN, {"activation": "relu"}),
    "LSTM": (LSTM, {}),
    "GRU": (GRU, {}),
}


def _import_torch():
    """torch, or ImportError saying how to install it."""
    try:
        import torch   # optional: only these conversions need it
    except ImportError:
        raise ImportError("crnn.interop.from_torch and to_torch need PyTorch, which is not "
                          "installed: pip install torch (any CPU wheel will do)") from None
    return torch


def _numpy(t):
    """A parameter as a float64 NumPy array (from any device and float dtype)."""
    return t.detach().cpu().double().numpy()


# -- PyTorch to crnn -----------------------------------------------------------------------
def _check_module(torch, module):
    if not isinstance(module, torch.nn.RNNBase) or module.mode not in _FROM_MODE:
        raise ValueError(f"expected a torch.nn.RNN, nn.LSTM or nn.GRU module, got "
                         f"{type(module).__name__}"
                         + (f" (mode {module.mode!r})"
                            if isinstance(module, torch.nn.RNNBase) else ""))
    if getattr(module, "proj_size", 0):
        raise ValueError(f"expected an nn.LSTM with proj_size=0, got proj_size="
                         f"{module.proj_size}: crnn's LSTM has no projection of h")


def _module_dtype(module, dtype):
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"expected dtype float32 or float64, got {dtype}")
        return dtype.name
    got = str(next(module.parameters()).dtype).replace("torch.", "")
    if got not in ("float32", "float64"):
        raise ValueError(f"expected a module of float32 or float64 parameters, got {got}: "
                         f"pass dtype='float32' (or 'float64') to convert it")
    return got


def _layer_weights(module, k, suffix, cls):
    """crnn's ``[kernel, recurrent_kernel(, bias)]`` of layer ``k`` (direction
    ``suffix``), float64."""
    w_ih = _numpy(getattr(module, f"weight_ih_l{k}{suffix}"))
    w_hh = _numpy(getattr(module, f"weight_hh_l{k}{suffix}"))
    if module.bias:
        b_ih = _numpy(getattr(module, f"bias_ih_l{k}{suffix}"))
        b_hh = _numpy(getattr(module, f"bias_hh_l{k}{suffix}"))
    else:
        b_ih = b_hh = np.zeros(w_ih.shape[0])
    if cls is GRU:
        weights = weights_from_torch(w_ih, w_hh, b_ih, b_hh)
    else:
        weights = [w_ih.T, w_hh.T, b_ih + b_hh]
    return weights if module.bias else weights[:2]


def from_torch(module, return_state=False, dtype=None):
    """A crnn layer or model computing what a PyTorch ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``
    computes, with its weights.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any ``num_layers``, ``bidirectional``, ``bias``, ``batch_first``, ``dropout``;
        ``nonlinearity`` tanh or relu. ``proj_size > 0`` raises ``ValueError``.
    return_state : bool
        Also return the final states (see Returns).
    dtype : {"float32", "float64"}, optional
        Of the crnn weights; by default the module's (float16 and bfloat16 modules need
        one given).

    Returns
    -------
    crnn.layers.RNN, crnn.Bidirectional, crnn.Sequential or crnn.Model
        One layer (``num_layers=1``): ``SimpleRNN``/``LSTM``/``GRU`` with
        ``return_sequences=True``, inside ``Bidirectional`` when bidirectional; several:
        a ``Sequential`` of those (a ``Dropout(dropout)`` between two where the module
        has ``dropout > 0``). On ``x (B, T, input_size)`` (batch-first whatever the
        module's ``batch_first``) it returns the module's ``output``, ``(B, T, H *
        directions)``. With ``return_state``: one layer returns ``[output, *states]``
        with its return_state; several make a functional ``Model`` returning
        ``[output, *states]``. ``states`` holds ``(B, H)`` arrays layer by layer,
        forward direction before backward, ``[h]`` (``[h, c]`` for the LSTM) each:
        ``np.stack(states)`` is PyTorch's ``h_n`` (LSTM: ``np.stack(states[0::2])`` is
        ``h_n`` and ``np.stack(states[1::2])`` is ``c_n``).
    """
    torch = _import_torch()
    _check_module(torch, module)
    dtype = _module_dtype(module, dtype)
    cls, options = _FROM_MODE[module.mode]
    H, L = module.hidden_size, module.num_layers
    directions = 2 if module.bidirectional else 1
    layers = []
    for k in range(L):
        D = module.input_size if k == 0 else H * directions
        layer = cls(H, use_bias=module.bias, return_sequences=True,
                    return_state=return_state, dtype=dtype, **options)
        weights = _layer_weights(module, k, "", cls)
        if module.bidirectional:
            layer = Bidirectional(layer, merge_mode="concat")
            weights = weights + _layer_weights(module, k, "_reverse", cls)
        layer.build((None, None, D))
        layer.set_weights([np.asarray(w, dtype=dtype) for w in weights])
        layers.append(layer)
    if L == 1:
        return layers[0]
    dropout = float(module.dropout)
    if not return_state:
        stack = []
        for k, layer in enumerate(layers):
            if k and dropout > 0:
                stack.append(Dropout(dropout, dtype=dtype))
            stack.append(layer)
        return Sequential([engine.Input((None, module.input_size), dtype=dtype)] + stack)
    x = inputs = engine.Input((None, module.input_size), dtype=dtype)
    states = []
    for k, layer in enumerate(layers):
        if k and dropout > 0:
            x = Dropout(dropout, dtype=dtype)(x)
        out = layer(x)
        x = out[0]
        states.extend(out[1:])
    return Model(inputs, [x] + states)


# -- crnn to PyTorch -----------------------------------------------------------------------
def _recurrent(layer, where):
    """``(forward layer, backward layer or None)`` of a recurrent layer or a
    Bidirectional, after checking that PyTorch can hold it."""
    if isinstance(layer, Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(f"expected Bidirectional with merge_mode='concat' ({where}; "
                             f"PyTorch concatenates the two directions), got "
                             f"merge_mode={layer.merge_mode!r}")
        f, b = layer.forward_layer, layer.backward_layer
        if f.go_backwards or not b.go_backwards:
            raise ValueError(f"expected Bidirectional's forward layer to run forward and "
                             f"its backward layer backward ({where}), got go_backwards="
                             f"{f.go_backwards} and {b.go_backwards}")
        if type(f) is not type(b) or _signature(f) != _signature(b):
            raise ValueError(f"expected Bidirectional's two layers to be of one kind and "
                             f"configuration ({where}; PyTorch has one for both), got "
                             f"{_describe(f)} and {_describe(b)}")
        pair = (f, b)
    elif isinstance(layer, RNN):
        if layer.go_backwards:
            raise ValueError(f"expected go_backwards=False ({where}): PyTorch runs a "
                             f"one-directional layer forward only, got {layer.name!r} with "
                             f"go_backwards=True")
        pair = (layer, None)
    else:
        raise ValueError(f"expected a SimpleRNN, LSTM or GRU layer, or Bidirectional of "
                         f"one ({where}), got {type(layer).__name__}")
    for each in pair:
        if each is not None:
            _check_convertible(each, where)
    return pair


def _signature(layer):
    cell = layer.cell
    return (type(layer), cell.units, cell.use_bias, cell.activation,
            getattr(cell, "recurrent_activation", None),
            getattr(cell, "reset_after", None), layer.dtype)


def _describe(layer):
    return f"{type(layer).__name__}({layer.cell.units}, activation={layer.cell.activation!r})"


def _check_convertible(layer, where):
    cell = layer.cell
    name = f"{type(layer).__name__} {layer.name!r} ({where})"
    if type(layer) not in (SimpleRNN, LSTM, GRU):
        raise ValueError(f"expected a SimpleRNN, LSTM or GRU layer, got {name}")
    if isinstance(layer, SimpleRNN):
        if cell.activation not in ("tanh", "relu"):
            raise ValueError(f"expected activation 'tanh' or 'relu' for {name} (nn.RNN's "
                             f"nonlinearity), got {cell.activation!r}")
    else:
        if cell.activation != "tanh" or cell.recurrent_activation != "sigmoid":
            raise ValueError(f"expected activation='tanh' and recurrent_activation="
                             f"'sigmoid' for {name} (PyTorch's), got "
                             f"{cell.activation!r} and {cell.recurrent_activation!r}")
    if isinstance(layer, GRU) and not cell.reset_after:
        raise ValueError(f"expected reset_after=True for {name}: PyTorch's nn.GRU applies "
                         f"the reset gate after the recurrent product, and has no "
                         f"reset_after=False GRU")
    if cell.dropout or cell.recurrent_dropout:
        raise ValueError(f"expected dropout=0 and recurrent_dropout=0 for {name} (PyTorch's "
                         f"modules have neither, only dropout between layers), got "
                         f"{cell.dropout} and {cell.recurrent_dropout}")
    if layer.stateful:
        raise ValueError(f"expected stateful=False for {name}: a PyTorch module takes its "
                         f"states as arguments (pass h0 to it)")


def _stack(obj):
    """The recurrent layers (or Bidirectionals) of ``obj`` in order and the dropout rate
    between them."""
    if isinstance(obj, (RNN, Bidirectional)):
        return [obj], 0.0
    if not isinstance(obj, Model) or obj._architecture == "subclassed":
        raise ValueError(f"expected a SimpleRNN, LSTM or GRU layer, a Bidirectional of "
                         f"one, or a Sequential (or functional chain) of them, got "
                         f"{type(obj).__name__}")
    if obj._architecture == "functional":
        _check_chain(obj)
    layers, rates, pending = [], set(), None
    for i, layer in enumerate(obj.layers):
        if isinstance(layer, Dropout):
            if not layers or pending is not None:
                raise ValueError(f"expected Dropout only between two recurrent layers "
                                 f"(PyTorch's dropout), got {layer.name!r} at position {i}")
            pending = layer.rate
            continue
        if not isinstance(layer, (RNN, Bidirectional)):
            raise ValueError(f"expected only SimpleRNN, LSTM, GRU, Bidirectional and "
                             f"Dropout layers (what one PyTorch module holds), got "
                             f"{type(layer).__name__} {layer.name!r} at position {i}")
        if layers:
            rates.add(pending or 0.0)
        pending = None
        layers.append(layer)
    if pending is not None:
        raise ValueError("expected Dropout only between two recurrent layers (PyTorch's "
                         "dropout), got one after the last")
    if not layers:
        raise ValueError(f"expected at least one recurrent layer, got {obj.name!r} with "
                         f"none")
    if len(rates) > 1:
        raise ValueError(f"expected one dropout rate between every two layers (PyTorch "
                         f"has one), got {sorted(rates)}")
    return layers, (rates.pop() if rates else 0.0)


def _check_chain(model):
    """A functional model that is a chain: each layer called once, on the previous
    one's first output (as :func:`from_torch` with ``return_state`` builds)."""
    previous = None
    for node in model._nodes:
        inputs = node.inputs()
        ok = len(inputs) == 1 and not node.kwargs and (
            inputs[0].node is previous and (previous is None or inputs[0].index == 0))
        if not ok:
            raise ValueError(f"expected a functional model that is a chain of layers (each "
                             f"called once on the previous one's output), got "
                             f"{model.name!r} where {node.layer.name!r} reads "
                             f"{len(inputs)} tensors")
        previous = node
    if len(model._nodes) != len(model.layers):
        raise ValueError(f"expected each layer of {model.name!r} called once, got a layer "
                         f"called several times")


def to_torch(layer_or_model, batch_first=True):
    """The PyTorch ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` module of a crnn layer or stack,
    with its weights copied.

    Parameters
    ----------
    layer_or_model : crnn layer or model
        A built ``SimpleRNN`` (tanh or relu), ``LSTM`` or ``GRU`` (``reset_after=True``),
        a ``Bidirectional`` of one (``merge_mode="concat"``), or a ``Sequential`` (or a
        functional chain, as :func:`from_torch` makes) of those, one kind, one ``units``
        and one ``use_bias`` throughout, optionally with ``Dropout`` of one rate between
        the layers (the module's ``dropout``).
    batch_first : bool
        The module's ``batch_first`` (crnn is batch-first).

    Returns
    -------
    torch.nn.Module
        Of the layers' dtype (float32 or float64). Its ``output`` equals the crnn output
        of the last layer with ``return_sequences=True`` (without it, crnn returns
        ``output[:, -1]``), ``h_n``/``c_n`` its final states.

    Raises
    ------
    ValueError
        For what a PyTorch module cannot hold, named: ``GRU(reset_after=False)``, other
        activations, ``go_backwards`` without ``Bidirectional``, merge modes other than
        concat, input or recurrent dropout inside a layer, ``stateful``, mixed layer
        kinds or sizes, other layers in the stack, an unbuilt layer.
    """
    torch = _import_torch()
    stack, dropout = _stack(layer_or_model)
    pairs = [_recurrent(layer, f"layer {k}") for k, layer in enumerate(stack)]
    first = pairs[0][0]
    bidirectional = pairs[0][1] is not None
    for k, pair in enumerate(pairs[1:], 1):
        if (pair[1] is not None) != bidirectional:
            raise ValueError(f"expected every layer bidirectional or none (PyTorch's "
                             f"bidirectional is for all), got layer 0 "
                             f"{'' if bidirectional else 'not '}bidirectional and layer {k} "
                             f"{'' if pair[1] is not None else 'not '}bidirectional")
        if _signature(pair[0]) != _signature(first):
            raise ValueError(f"expected every layer of one kind and configuration "
                             f"(PyTorch's num_layers repeat one), got {_describe(first)} "
                             f"and {_describe(pair[0])} at layer {k}")
        if not pairs[k - 1][0].return_sequences:
            raise ValueError(f"expected return_sequences=True for layer {k - 1}: the next "
                             f"layer reads its whole sequence")
    for k, pair in enumerate(pairs):
        for layer in pair:
            if layer is not None and not layer.built:
                raise ValueError(f"expected a built layer, got {type(layer).__name__} "
                                 f"{layer.name!r} (layer {k}) without weights yet: call "
                                 f"it on a batch (or build it) first")
    cell = first.cell
    H, directions = cell.units, 2 if bidirectional else 1
    kind = type(first)
    args = dict(input_size=cell.input_dim, hidden_size=H, num_layers=len(pairs),
                bias=cell.use_bias, batch_first=bool(batch_first), dropout=dropout,
                bidirectional=bidirectional)
    for k, (f, _) in enumerate(pairs):
        expected = cell.input_dim if k == 0 else H * directions
        if f.cell.input_dim != expected:
            raise ValueError(f"expected layer {k} to read {expected} features, got "
                             f"{f.cell.input_dim}")
    torch_dtype = torch.float64 if first.dtype == np.float64 else torch.float32
    if kind is SimpleRNN:
        module = torch.nn.RNN(nonlinearity=cell.activation, **args)
    elif kind is LSTM:
        module = torch.nn.LSTM(**args)
    else:
        module = torch.nn.GRU(**args)
    module = module.to(torch_dtype)
    with torch.no_grad():
        for k, pair in enumerate(pairs):
            for layer, suffix in zip(pair, ("", "_reverse")):
                if layer is None:
                    continue
                for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                                       _torch_weights(layer)):
                    if name.startswith("bias") and not cell.use_bias:
                        continue
                    getattr(module, f"{name}_l{k}{suffix}").copy_(
                        torch.from_numpy(np.ascontiguousarray(value)))
    return module


def _torch_weights(layer):
    """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one crnn recurrent layer."""
    cell = layer.cell
    kernel, recurrent_kernel, bias = cell.kernel, cell.recurrent_kernel, cell.bias
    if isinstance(layer, GRU):
        return weights_to_torch([kernel, recurrent_kernel, bias])
    return kernel.T, recurrent_kernel.T, bias, np.zeros_like(bias)
