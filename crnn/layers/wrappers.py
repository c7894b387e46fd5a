"""Wrappers: layers made of another layer, with Keras's semantics.

:class:`TimeDistributed` applies a layer to every time step; :class:`Bidirectional` runs
a recurrent layer forward and a copy of it backward over the same sequence and merges
the two. Neither is a primitive: its ``call`` calls the inner layers and
:mod:`crnn.ops` functions, each of which records itself on the tape, so the tape
differentiates a wrapper without a ``_backward`` of its own. (They therefore have no
``backward(grad)`` outside a tape: use :class:`crnn.GradientTape`.)

The weights live in the inner layers; the wrapper shows them (``trainable_weights``,
``get_weights``, ``set_weights``, ``get_gradients``, ``count_params``), in Keras's order.
"""

import numpy as np

from crnn import engine, ops
from crnn.layers.base import (InnerWeights, Layer, accepts_mask, accepts_training,
                              deserialize_layer, serialize_layer)
from crnn.layers.cells import output_size
from crnn.layers.recurrent import RNN, reset_rows


def _shape_of(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _is_one_shape(shape):
    return isinstance(shape, tuple) and all(d is None or isinstance(d, (int, np.integer))
                                            for d in shape)


def _removeprefix(s, prefix):
    return s[len(prefix):] if s.startswith(prefix) else s


class TimeDistributed(Layer):
    """Apply ``layer`` to every time step of ``(B, T, ...)`` (Keras's
    ``TimeDistributed``).

    .. math:: y_{:, t} = \\mathrm{layer}(x_{:, t}), \\quad t = 1 \\ldots T

    The steps go through the layer at once: ``x`` is reshaped to ``(B*T, ...)``, the
    layer called on that, and its output ``(B*T, ...)`` reshaped to ``(B, T, ...)``. This
    equals a loop over the steps for any layer that treats the rows of a batch
    independently (Dense, Activation, Embedding, a recurrent layer on ``(B, T, T2, D)``;
    Dropout draws one mask over all steps).

    Parameters
    ----------
    layer : Layer
        Called with one input, returning one output.
    name : str, optional

    Calling ``td(x, training=False, mask=None)``: a mask ``(B, T, ...)`` (its first two
    axes the input's, else ``ValueError``) gives each step's mask ``mask[:, t]`` to the
    inner layer as its ``mask=``, where its ``call`` takes one (Keras's semantics: a
    recurrent layer over ``(B, T, T2, D)`` reads a mask ``(B, T, T2)``). The output's
    mask is the input's.

    ``params`` and ``grads`` are the inner layer's own dicts (as an RNN layer shows its
    cell's), so its weights appear once under their own names.

    Examples
    --------
    >>> layer = TimeDistributed(Dense(2))
    >>> layer(np.zeros((3, 5, 4), "float32")).shape
    (3, 5, 2)
    """

    def __init__(self, layer, name=None):
        if not isinstance(layer, Layer):
            raise ValueError(f"expected layer to be a crnn layer, got "
                             f"{type(layer).__name__}")
        super().__init__(name=name, dtype=layer.dtype)
        self.layer = layer

    # the inner layer's own dicts (read on each access: a layer may make new ones)
    @property
    def params(self):
        layer = self.__dict__.get("layer")
        return {} if layer is None else layer.params

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("TimeDistributed's params are its layer's: set weights "
                                 "with set_weights")

    @property
    def grads(self):
        layer = self.__dict__.get("layer")
        return {} if layer is None else layer.grads

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("TimeDistributed's grads are its layer's")

    # -- shapes and building ---------------------------------------------------------
    @staticmethod
    def _check_shape(shape):
        if len(shape) < 3:
            raise ValueError(f"expected input of shape (batch, time, ...) with at least 3 "
                             f"dimensions, got shape {tuple(shape)}")

    @staticmethod
    def _step_shape(shape):
        """``(B*T, ...)`` for ``(B, T, ...)`` (None when B or T is unknown)."""
        B, T = shape[0], shape[1]
        return (None if B is None or T is None else B * T,) + tuple(shape[2:])

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        if not self.layer.built:
            self.layer.build(self._step_shape(input_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        """``(B, T) + layer.compute_output_shape((B*T, ...))[1:]`` for ``(B, T, ...)``."""
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        inner = self.layer.compute_output_shape(self._step_shape(input_shape))
        if not _is_one_shape(inner):
            raise ValueError(f"expected the wrapped layer to return one tensor, "
                             f"{self.layer.name} returns {len(inner)}")
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def compute_output_spec(self, inputs, training=False, mask=None):
        self._check_shape(inputs.shape)
        self._maybe_build(inputs.shape)
        step = engine.SymbolicTensor(self._step_shape(inputs.shape), inputs.dtype)
        spec = self.layer.compute_output_spec(step)
        if isinstance(spec, (list, tuple)):
            raise ValueError(f"expected the wrapped layer to return one tensor, "
                             f"{self.layer.name} returns {len(spec)}")
        return engine.SymbolicTensor(tuple(inputs.shape[:2]) + tuple(spec.shape[1:]),
                                     spec.dtype)

    # The mask of the steps passes through unchanged (the layer runs on each step alone).
    supports_masking = True

    @staticmethod
    def _check_mask(mask, shape):
        """The mask as an array whose first two axes are the input's ``(B, T)``."""
        m = np.asarray(engine.value_of(mask))
        if m.ndim < 2:
            raise ValueError(f"expected a mask of shape (batch, time, ...) = "
                             f"{tuple(shape[:2])} + ... for TimeDistributed, got a "
                             f"{m.ndim}-D mask of shape {m.shape}")
        if m.shape[:2] != tuple(shape[:2]):
            raise ValueError(f"expected a mask whose first two dimensions (batch, time) "
                             f"match the input's {tuple(shape[:2])}, got mask shape "
                             f"{m.shape} for input shape {tuple(shape)}")
        if m.dtype.kind not in "biu":
            raise ValueError(f"expected mask to have dtype bool (or an integer dtype), got "
                             f"{m.dtype}")
        return m

    # -- calling ---------------------------------------------------------------------
    def call(self, inputs, training=False, mask=None):
        """``inputs (B, T, ...)``; ``mask (B, T, ...)`` or None: each step's mask
        ``mask[:, t]`` goes to the inner layer as its ``mask=`` where its ``call`` takes
        one (Keras's semantics; e.g. an RNN inside over ``(B, T, T2, D)`` with a mask
        ``(B, T, T2)``), else the mask is not used here."""
        x = inputs if isinstance(inputs, engine.Tensor) else np.asarray(inputs)
        shape = _shape_of(x)
        self._check_shape(shape)
        if mask is not None:
            mask = self._check_mask(mask, shape)
        self._maybe_build(shape)
        B, T = shape[0], shape[1]
        steps = ops.reshape(x, (B * T,) + tuple(shape[2:]))        # (B*T, ...)
        kwargs = {}
        if accepts_training(type(self.layer).call):
            kwargs["training"] = training
        if mask is not None and accepts_mask(type(self.layer).call):
            # the steps' masks, row b*T + t = mask[b, t], as the steps themselves
            kwargs["mask"] = mask.reshape((B * T,) + mask.shape[2:])
        y = self.layer(steps, **kwargs)
        if isinstance(y, (list, tuple)):
            raise ValueError(f"expected the wrapped layer to return one tensor, "
                             f"{self.layer.name} returned {len(y)}")
        return ops.reshape(y, (B, T) + tuple(_shape_of(y)[1:]))    # (B, T, ...)

    # -- the inner layer's weights ---------------------------------------------------
    @property
    def trainable_weights(self):
        return self.layer.trainable_weights

    @property
    def weights(self):
        return self.layer.weights

    def get_weights(self):
        return self.layer.get_weights()

    def set_weights(self, weights):
        self.layer.set_weights(weights)

    def get_gradients(self):
        return self.layer.get_gradients()

    def count_params(self):
        return self.layer.count_params()

    # -- config and repr -------------------------------------------------------------
    def get_config(self):
        return {"layer": serialize_layer(self.layer), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(deserialize_layer(config.pop("layer")), **config)

    def __repr__(self):
        return f"TimeDistributed({self.layer!r})"


MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _fresh_config(layer, seed_offset=0):
    """``layer.get_config()`` with every layer inside it (an RNN's cell) replaced by a new
    one of the same configuration, recursively: a layer made from it has its own
    weights, as Keras's deserialized copies do. An int ``seed`` at any level is moved by
    ``seed_offset`` (so that a second copy draws other weights, still reproducibly)."""
    def fresh(value):
        if isinstance(value, Layer):
            return type(value).from_config(_fresh_config(value, seed_offset))
        if isinstance(value, list):
            return [fresh(v) for v in value]
        if isinstance(value, tuple):
            return tuple(fresh(v) for v in value)
        return value
    config = {k: fresh(v) for k, v in layer.get_config().items()}
    seed = config.get("seed")
    if (seed_offset and isinstance(seed, (int, np.integer))
            and not isinstance(seed, bool)):
        config["seed"] = int(seed) + seed_offset
    return config


class _JoinDirections(engine.Op, register=False):
    """Bidirectional's ``"concat"`` merge of whole sequences: ``y (B, T, H_f)`` and
    ``y_rev (B, T, H_b)``, the backward layer's outputs in its own step order, into
    ``[y_t, y_rev_{T-1-t}]`` along the last axis, written once (a reversal and then a
    concatenation copy the backward layer's outputs twice)."""

    def _forward(self, inputs):
        y, y_rev = inputs
        H = y.shape[2]
        out = np.empty(y.shape[:2] + (H + y_rev.shape[2],), dtype=y.dtype)
        out[:, :, :H] = y
        out[:, :, H:] = y_rev[:, ::-1]   # the backward layer's step k saw x_{T-1-k}
        return [out], H

    def _backward(self, H, d_outputs):
        d = d_outputs[0]
        return [d[:, :, :H], d[:, ::-1, H:]], None


class Bidirectional(InnerWeights, Layer):
    """A recurrent layer run over the sequence in both directions (Keras's
    ``Bidirectional``).

    .. math::
        y^{\\rightarrow} = \\mathrm{fwd}(x), \\quad
        y^{\\leftarrow}_t = \\mathrm{bwd}(x)_{T-1-t}, \\quad
        y = \\mathrm{merge}(y^{\\rightarrow}, y^{\\leftarrow})

    The backward layer processes the sequence from its end; with ``return_sequences``
    its outputs are put back in time order, so that step ``t`` of both directions lines
    up (as Keras and PyTorch's ``bidirectional=True`` do).

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
        Its configuration makes the forward layer: as in Keras 3, a new layer named
        ``forward_<name>`` with fresh weights (the given instance's weights are not
        reused).
    merge_mode : {"concat", "sum", "mul", "ave", None}
        How the two outputs combine: joined along the last axis ``(..., H_f + H_b)``,
        added, multiplied, averaged, or (None) returned as a list ``[fwd, bwd]``.
    backward_layer : SimpleRNN, LSTM or GRU, optional
        Used as it is. By default, a layer of ``layer``'s configuration with
        ``go_backwards`` flipped, named ``backward_<name>``, with its own weights (its
        ``seed`` is ``seed + 1`` when ``layer`` has an int seed, so the two differ).
        It must have a different ``go_backwards`` than ``layer`` and the same
        ``return_sequences``, ``return_state`` and dtype.
    name : str, optional

    Calling ``layer(x, initial_state=None, training=False)`` with ``x (B, T, D)`` gives
    the merged output ``(B, T, H')`` with ``return_sequences``, else ``(B, H')``. With
    ``return_state`` it returns ``[output, *forward_states, *backward_states]`` (with
    ``merge_mode=None``: ``[fwd, bwd, *forward_states, *backward_states]``).
    ``initial_state`` is a list: the forward layer's states, then the backward layer's.

    Variable-length sequences: ``mask (B, T)`` or ``lengths (B,)`` as for the recurrent
    layers go to both. The backward layer reverses the mask along with the sequence
    (``go_backwards``), so it reads each sequence from that sequence's own last real step
    back to its first, and never a padded step before a real one: what PyTorch's packed
    sequences compute (a plain reversal of the padded array would start the backward
    direction on the padding). This holds for any mask, right-padded or not: the
    backward direction runs over the real steps in reverse order, the padded steps
    passing its state through. With ``return_sequences`` both directions output zeros at
    the padded steps.

    Weights: the forward layer's, then the backward layer's (Keras's order). ``params``
    and ``grads`` are views built on each access, ``{"forward/<name>": array,
    "backward/<name>": array}``, of the inner layers' own arrays.

    Examples
    --------
    >>> layer = Bidirectional(LSTM(4, return_sequences=True))
    >>> layer(np.zeros((2, 5, 3), "float32")).shape   # both directions joined
    (2, 5, 8)
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, name=None):
        if not isinstance(layer, RNN):
            raise ValueError(f"expected layer to be a recurrent layer (SimpleRNN, LSTM, "
                             f"GRU), got {type(layer).__name__}")
        if backward_layer is not None and not isinstance(backward_layer, RNN):
            raise ValueError(f"expected backward_layer to be a recurrent layer "
                             f"(SimpleRNN, LSTM, GRU) or None, got "
                             f"{type(backward_layer).__name__}")
        if not (merge_mode is None
                or (isinstance(merge_mode, str) and merge_mode in MERGE_MODES)):
            raise ValueError(f"expected merge_mode to be one of {list(MERGE_MODES)}, got "
                             f"{merge_mode!r}")
        super().__init__(name=name, dtype=layer.dtype)
        base = _removeprefix(_removeprefix(layer.name, "forward_"), "backward_")
        config = _fresh_config(layer)
        config["name"] = "forward_" + base
        self.forward_layer = type(layer).from_config(config)
        self._backward_given = backward_layer is not None
        if backward_layer is None:
            config = _fresh_config(layer, seed_offset=1)  # its own weights, reproducibly
            config["go_backwards"] = not layer.go_backwards
            config["name"] = "backward_" + base
            backward_layer = type(layer).from_config(config)
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self._verify()
        # as Keras: the outputs at padded steps are zeros in a returned sequence, so that
        # both directions line up with nothing from a neighbouring real step
        for inner in (self.forward_layer, self.backward_layer):
            inner.zero_output_for_mask = inner.return_sequences

    def _verify(self):
        f, b = self.forward_layer, self.backward_layer
        if f.go_backwards == b.go_backwards:
            raise ValueError(f"expected the forward and backward layers to have different "
                             f"go_backwards, got {f.go_backwards} for both")
        for attr in ("return_sequences", "return_state", "dtype"):
            if getattr(f, attr) != getattr(b, attr):
                raise ValueError(f"expected the forward and backward layers to have the "
                                 f"same {attr}, got {getattr(f, attr)} (forward) and "
                                 f"{getattr(b, attr)} (backward)")
        fo, bo = output_size(f.cell), output_size(b.cell)
        if self.merge_mode in ("sum", "mul", "ave") and fo != bo:
            raise ValueError(f"expected the forward and backward layers to have the same "
                             f"units for merge_mode={self.merge_mode!r}, got {fo} and "
                             f"{bo}")

    def _inner(self):
        # the inner layers' weights, under forward/ and backward/ (InnerWeights)
        return [(prefix, self.__dict__[prefix + "_layer"])
                for prefix in ("forward", "backward")
                if self.__dict__.get(prefix + "_layer") is not None]

    @property
    def return_sequences(self):
        return self.forward_layer.return_sequences

    @property
    def return_state(self):
        return self.forward_layer.return_state

    # -- shapes and building ---------------------------------------------------------
    @staticmethod
    def _check_shape(shape):
        if len(shape) != 3:
            raise ValueError(f"expected input of shape (batch, time, features), got shape "
                             f"{tuple(shape)}")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        for layer in (self.forward_layer, self.backward_layer):
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def _split_states(self, initial_state):
        """``initial_state`` as (forward states, backward states), or (None, None)."""
        if initial_state is None:
            return None, None
        nf = len(self.forward_layer.state_size)
        nb = len(self.backward_layer.state_size)
        states = (list(initial_state) if isinstance(initial_state, (list, tuple))
                  else [initial_state])
        if len(states) != nf + nb:
            names = ([f"forward {s}" for s in self.forward_layer._state_names()]
                     + [f"backward {s}" for s in self.backward_layer._state_names()])
            raise ValueError(f"expected initial_state to be a list of {nf + nb} arrays "
                             f"{names}, got {len(states)}")
        return states[:nf], states[nf:]

    def compute_output_shape(self, input_shape):
        """The merged output's shape (a list: ``[fwd, bwd]`` with ``merge_mode=None``,
        the states' shapes after the outputs with ``return_state``), for ``(B, T, D)``."""
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        f = self.forward_layer.compute_output_shape(input_shape)
        b = self.backward_layer.compute_output_shape(input_shape)
        f, b = ([f], [b]) if _is_one_shape(f) else (list(f), list(b))
        if self.merge_mode is None:
            outputs = [f[0], b[0]]
        elif self.merge_mode == "concat":
            last = (None if f[0][-1] is None or b[0][-1] is None
                    else f[0][-1] + b[0][-1])
            outputs = [f[0][:-1] + (last,)]
        else:
            outputs = [f[0]]
        if not self.return_state:
            return outputs[0] if self.merge_mode is not None else outputs
        return outputs + f[1:] + b[1:]

    def compute_output_spec(self, inputs, initial_state=None, training=False, mask=None,
                            lengths=None):
        self._check_shape(inputs.shape)
        self._split_states(initial_state)
        self._maybe_build(inputs.shape)
        f = engine.flatten(self.forward_layer.compute_output_spec(inputs))
        b = engine.flatten(self.backward_layer.compute_output_spec(inputs))

        def spec(s):
            return engine.SymbolicTensor(s.shape, s.dtype)
        if self.merge_mode is None:
            outputs = [spec(f[0]), spec(b[0])]
        elif self.merge_mode == "concat":
            outputs = [engine.SymbolicTensor(
                f[0].shape[:-1] + (f[0].shape[-1] + b[0].shape[-1],), f[0].dtype)]
        else:
            outputs = [spec(f[0])]
        if not self.return_state:
            return outputs[0] if self.merge_mode is not None else outputs
        return outputs + [spec(s) for s in f[1:] + b[1:]]

    # -- calling ---------------------------------------------------------------------
    def compute_mask(self, inputs, mask=None):
        """As a recurrent layer's: the input's mask with ``return_sequences`` (the merged
        output is in time order), else None; with ``return_state`` None for each state."""
        out = None if not self.return_sequences else mask
        outputs = [out, out] if self.merge_mode is None else [out]
        if not self.return_state:
            return outputs[0] if self.merge_mode is not None else outputs
        n = len(self.forward_layer.state_size) + len(self.backward_layer.state_size)
        return outputs + [None] * n

    def call(self, inputs, initial_state=None, training=False, mask=None, lengths=None):
        """Both directions over ``inputs (B, T, D)``, merged (see the class docstring for
        ``initial_state``, ``mask`` and ``lengths``)."""
        self._check_shape(_shape_of(inputs))
        forward_state, backward_state = self._split_states(initial_state)
        self._maybe_build(_shape_of(inputs))
        # The two directions are independent: they run at once, on a thread each
        # (crnn.cores.concurrently), forward and backward. The backward layer reverses
        # the mask with the sequence: see the docstring.
        f, b = self.forward_layer, self.backward_layer
        if (type(f).call is RNN.call and type(b).call is RNN.call and f._fused
                and b._fused):   # one primitive each (a built-in cell)
            y, y_rev = engine.run_concurrently([
                f._primitive_call(inputs, forward_state, training, mask, lengths),
                b._primitive_call(inputs, backward_state, training, mask, lengths)])
            y, y_rev = f._call_result(y), b._call_result(y_rev)
        else:   # a subclass's own call, or a cell run step by step: one after the other
            y = f(inputs, initial_state=forward_state, training=training, mask=mask,
                  lengths=lengths)
            y_rev = b(inputs, initial_state=backward_state, training=training, mask=mask,
                      lengths=lengths)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences and self.merge_mode == "concat":
            output = _JoinDirections(name="join_directions").call([y, y_rev])
        else:
            if self.return_sequences:
                # the backward layer's step k saw x_{T-1-k}: reverse it back to time order
                y_rev = ops.getitem(y_rev, (slice(None), slice(None, None, -1)))
            output = self._merge(y, y_rev)
        if not self.return_state:
            return output
        return (output if self.merge_mode is None else [output]) + states

    def _merge(self, y, y_rev):
        mode = self.merge_mode
        if mode == "concat":
            return ops.concatenate([y, y_rev], axis=-1)
        if mode == "sum":
            return ops.add(y, y_rev)
        if mode == "mul":
            return ops.multiply(y, y_rev)
        if mode == "ave":
            # a half of the layer's dtype: a Python 0.5 would promote float32 to float64
            return ops.multiply(ops.add(y, y_rev), np.asarray(0.5, dtype=self.dtype))
        return [y, y_rev]

    # -- stateful inner layers -------------------------------------------------------
    def reset_states(self, states=None):
        """Reset the stored states of the stateful inner layers (``stateful=True`` on the
        wrapped layer makes both stateful). ``states``: None, a bool mask ``(B,)`` or ints,
        as :meth:`crnn.layers.recurrent.RNN.reset_states`; or values, a list of the
        forward layer's states then the backward layer's.

        Each direction carries its own state from one call to the next: the forward
        layer continues the sequence as a stateful layer does, and the backward layer
        starts batch ``i + 1``'s window (read from its end) from the state it reached at
        the start of batch ``i``'s, which is not what one backward pass over the whole
        sequence computes (as in Keras)."""
        if states is not None and reset_rows(states, None) is None:
            forward_states, backward_states = self._split_states(states)
        else:
            forward_states = backward_states = states
        for layer, st in ((self.forward_layer, forward_states),
                          (self.backward_layer, backward_states)):
            if layer.stateful:
                layer.reset_states(st)

    def reset_state(self, states=None):
        """Keras 3's name for :meth:`reset_states` (the same method)."""
        self.reset_states(states)

    # -- the inner layers' weights ---------------------------------------------------
    @property
    def trainable_weights(self):
        return self.forward_layer.trainable_weights + self.backward_layer.trainable_weights

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    def get_weights(self):
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()

    def set_weights(self, weights):
        """Set the forward layer's weights, then the backward layer's, from one list."""
        self._check_built("set_weights")
        weights = list(weights)
        f, b = self.forward_layer, self.backward_layer
        expected = [f"forward/{k}" for k in f.params] + [f"backward/{k}" for k in b.params]
        if len(weights) != len(expected):
            raise ValueError(f"expected {len(expected)} weight arrays {expected}, got "
                             f"{len(weights)}")
        current = f.weights + b.weights
        for name, w, cur in zip(expected, weights, current):
            if np.shape(w) != cur.shape:
                raise ValueError(f"expected {name} of shape {cur.shape}, got "
                                 f"{np.shape(w)}")
        n = len(f.params)
        f.set_weights(weights[:n])
        b.set_weights(weights[n:])

    def get_gradients(self):
        return self.forward_layer.get_gradients() + self.backward_layer.get_gradients()

    def count_params(self):
        self._check_built("count_params")
        return self.forward_layer.count_params() + self.backward_layer.count_params()

    # -- config and repr -------------------------------------------------------------
    def get_config(self):
        return {"layer": serialize_layer(self.forward_layer),
                "merge_mode": self.merge_mode,
                "backward_layer": serialize_layer(self.backward_layer),
                "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize_layer(backward)
        return cls(layer, backward_layer=backward, **config)

    def __repr__(self):
        parts = [repr(self.forward_layer)]
        if self.merge_mode != "concat":
            parts.append(f"merge_mode={self.merge_mode!r}")
        if self._backward_given:
            parts.append(f"backward_layer={self.backward_layer!r}")
        return f"Bidirectional({', '.join(parts)})"


__all__ = ["Bidirectional", "TimeDistributed"]
