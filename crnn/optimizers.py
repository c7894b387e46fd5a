"""Optimizers that update parameter arrays in place, with the update rules of Keras 3.

``opt.apply(params, grads)`` takes the list of weight arrays (float32 or float64) and a
list of gradients of the same shapes (``None`` skips a parameter). The arrays are updated
in place and in their own dtype: a float32 weight stays the same float32 object. The state
of each parameter (momentum, moments, accumulators) is kept by its position in the list, so
the caller passes the same list order every time; ``opt.iterations`` counts the updates.

Before the update, as Keras's ``BaseOptimizer.apply`` does:

1. gradients that are ``None`` are dropped (all of them ``None`` is an error);
2. one of the clipping options, if set, is applied:

   - ``clipnorm``: each gradient :math:`g \\leftarrow g \\cdot \\frac{c}{\\max(\\|g\\|_2, c)}`;
   - ``global_clipnorm``: every gradient
     :math:`g \\leftarrow g \\cdot c \\min(1 / \\|G\\|_2, 1 / c)` with :math:`\\|G\\|_2` the
     joint norm of all of them (NaN for all when that norm is not finite, as in Keras);
   - ``clipvalue``: each element clipped to :math:`[-c, c]`;

3. the learning rate is read: a float, or ``schedule(iterations)`` for a callable
   (``iterations`` before this update, starting at 0).

Non-finite gradients are not checked (Keras does not); the caller may.
"""
import inspect
import math
import numbers

import numpy as np

from crnn import backend, registry
from crnn.reference import optim as reference_optim

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- argument checks ------------------------------------------------------------------------
def _real(name, value, lo=None, hi=None, lo_open=False, hi_open=False, optional=False):
    """Check that ``value`` is a real number (not a bool) in the given interval."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"expected {name} to be a finite number, got {value!r}")
    value = float(value)
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ValueError(f"expected {name} in {interval}, got {value!r}")
    return value


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected {name} to be True or False, got {value!r}")
    return bool(value)


# -- learning-rate schedules ----------------------------------------------------------------
class LearningRateSchedule:
    """A learning rate as a function of the step, as Keras's schedules.

    Subclasses define ``__call__(step) -> float`` (``step`` is ``optimizer.iterations``, an
    int starting at 0) and ``get_config()``. Any callable of the step can be passed as a
    learning rate; only schedules with a ``get_config`` survive :func:`serialize`.
    """

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _StepDecay(LearningRateSchedule):
    """What the decay schedules share: their arguments, ``p = step / decay_steps``
    (rounded down when ``staircase``) and their config; subclasses give ``_decay(p)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase, name):
        self.initial_learning_rate = _real("initial_learning_rate", initial_learning_rate, 0)
        self.decay_steps = _real("decay_steps", decay_steps, 0, lo_open=True)
        self.decay_rate = _real("decay_rate", decay_rate, 0)
        self.staircase = _bool("staircase", staircase)
        self.name = name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self._decay(p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


@registry.serializable("schedule")
class ExponentialDecay(_StepDecay):
    """Exponential decay of the learning rate.

    .. math::

        \\eta(t) = \\eta_0 \\, r^{t / s}

    with :math:`t / s` rounded down when ``staircase``.

    Parameters
    ----------
    initial_learning_rate : float
        :math:`\\eta_0 \\ge 0`.
    decay_steps : int or float
        :math:`s > 0`.
    decay_rate : float
        :math:`r \\ge 0`.
    staircase : bool, default False
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decay(self, p):
        return self.initial_learning_rate * self.decay_rate ** p


@registry.serializable("schedule")
class InverseTimeDecay(_StepDecay):
    """Inverse-time decay of the learning rate.

    .. math::

        \\eta(t) = \\frac{\\eta_0}{1 + r \\, t / s}

    with :math:`t / s` rounded down when ``staircase``.

    Parameters
    ----------
    initial_learning_rate : float
        :math:`\\eta_0 \\ge 0`.
    decay_steps : int or float
        :math:`s > 0`.
    decay_rate : float
        :math:`r \\ge 0`.
    staircase : bool, default False
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decay(self, p):
        return self.initial_learning_rate / (1 + self.decay_rate * p)




# -- the optimizer base ---------------------------------------------------------------------
class Optimizer:
    """The base of crnn's optimizers: argument checks, clipping, the learning rate, the
    per-parameter slots and their state.

    Subclasses name their slots in ``_slot_names()``, give each slot's initial value in
    ``_slot_init`` and implement ``_update(i, p, g, lr)``, which updates parameter ``p``
    (index ``i``) in place from gradient ``g`` (already clipped and cast to ``p.dtype``)
    with learning rate ``lr`` (a scalar of ``p.dtype``).

    Parameters
    ----------
    learning_rate : float or callable
        A float ``>= 0`` or a schedule: a callable of the step (``iterations``) returning one.
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping (at most one of them), see the module docstring.
    name : str, optional
    """

    default_name = None

    def __init__(self, learning_rate, clipnorm=None, global_clipnorm=None, clipvalue=None,
                 name=None):
        self.learning_rate = learning_rate
        self.clipnorm = _real("clipnorm", clipnorm, 0, lo_open=True, optional=True)
        self.global_clipnorm = _real("global_clipnorm", global_clipnorm, 0, lo_open=True,
                                     optional=True)
        self.clipvalue = _real("clipvalue", clipvalue, 0, lo_open=True, optional=True)
        n_clip = sum(c is not None for c in (clipnorm, global_clipnorm, clipvalue))
        if n_clip > 1:
            raise ValueError(f"expected at most one of clipnorm, global_clipnorm and clipvalue, "
                             f"got clipnorm={clipnorm}, global_clipnorm={global_clipnorm}, "
                             f"clipvalue={clipvalue}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"expected name to be a string, got {name!r}")
        self.name = name or self.default_name
        self.iterations = 0
        self._slots = None      # {slot name: [array per parameter]} once built
        self._shapes = None     # [(shape, dtype) per parameter] once built
        self._pending = None    # state from set_state waiting for the parameters
        self._scratch_arrays = {}  # (parameter, k) -> a temporary of its shape (_scratch)

    # learning rate -------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate of the next update (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._learning_rate = value
        else:
            self._learning_rate = _real("learning_rate", value, 0)

    # slots ---------------------------------------------------------------------------------
    def _slot_names(self):
        return ()

    def _slot_init(self, slot):
        return 0.0

    @property
    def built(self):
        return self._slots is not None

    def build(self, params):
        """Create the slots for ``params`` (done by the first :meth:`apply`); a pending
        :meth:`set_state` is checked against them and loaded."""
        params = self._check_params(params)
        if self.built:
            self._check_built_for(params)
        else:
            self._shapes = [(p.shape, p.dtype) for p in params]
            self._slots = {s: [np.full(p.shape, self._slot_init(s), dtype=p.dtype)
                               for p in params] for s in self._slot_names()}
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._load(pending)

    @staticmethod
    def _check_params(params):
        if not isinstance(params, (list, tuple)):
            raise ValueError(f"expected params to be a list of arrays, got "
                             f"{type(params).__name__}")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise ValueError(f"expected params[{i}] to be a numpy.ndarray, got "
                                 f"{type(p).__name__}")
            if p.dtype not in _FLOATS:
                raise ValueError(f"expected params[{i}] to have dtype float32 or float64, got "
                                 f"{p.dtype}")
            if not p.flags.writeable:
                raise ValueError(f"expected params[{i}] to be writeable (it is updated in "
                                 f"place), got a read-only array")
        return list(params)

    def _check_built_for(self, params):
        if len(params) != len(self._shapes):
            raise ValueError(f"expected the {len(self._shapes)} parameters this optimizer was "
                             f"built for, got {len(params)}")
        for i, (p, (shape, dtype)) in enumerate(zip(params, self._shapes)):
            if p.shape != shape or p.dtype != dtype:
                raise ValueError(f"expected params[{i}] of shape {shape} and dtype {dtype} "
                                 f"(as when this optimizer was built), got {p.shape} {p.dtype}")

    # the update ----------------------------------------------------------------------------
    def apply(self, params, grads):
        """Update ``params`` in place from ``grads``.

        Parameters
        ----------
        params : list of ndarray
            The weights, float32 or float64, writeable; the same list order every call.
        grads : list of ndarray or None
            ``grads[i]`` has the shape of ``params[i]``; ``None`` leaves ``params[i]`` (and
            its slots) untouched.
        """
        params = self._check_params(params)
        if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
            got = f"{len(grads)}" if isinstance(grads, (list, tuple)) else type(grads).__name__
            raise ValueError(f"expected a list of {len(params)} gradients (one per parameter), "
                             f"got {got}")
        if any(p.ndim == 0 for p in params):
            # a scalar weight (Keras's shape ()) is updated through a 1-element view of
            # it: the compiled update loops take arrays with an axis
            grads = [np.reshape(g, (1,)) if p.ndim == 0 and g is not None
                     and np.shape(g) == () else g for p, g in zip(params, grads)]
            params = [p.reshape(1) if p.ndim == 0 else p for p in params]
        checked = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                checked.append(None)
                continue
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"expected grads[{i}] of shape {p.shape} (the shape of "
                                 f"params[{i}]), got {g.shape}")
            if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
                raise ValueError(f"expected grads[{i}] to hold real numbers, got dtype {g.dtype}")
            checked.append(g)
        if all(g is None for g in checked):
            raise ValueError("expected at least one gradient, got None for every parameter")
        self.build(params)
        clipped = self._clip(checked)
        lr = self.learning_rate
        for i, (p, g) in enumerate(zip(params, clipped)):
            if g is not None:
                dt = p.dtype.type
                self._update(i, p, np.asarray(g, dtype=p.dtype), dt(lr))
        self.iterations += 1

    def _clip(self, grads):
        """Keras's ``_clip_gradients``: by norm, by global norm, or by value."""
        if self.clipnorm is not None:
            out = []
            for g in grads:
                if g is not None:
                    norm = math.sqrt(np.sum(np.square(g, dtype=np.float64)))  # ||g||_2
                    g = g * (self.clipnorm / max(norm, self.clipnorm))      # g c / max(|g|, c)
                out.append(g)
            return out
        if self.global_clipnorm is not None:
            sq = sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads
                     if g is not None)
            norm = math.sqrt(sq)                                            # ||G||_2
            c = self.global_clipnorm
            # c * min(1/|G|, 1/c); NaN (as in Keras) when |G| is inf or NaN
            scale = c * min(1.0 / norm, 1.0 / c) if norm > 0 else 1.0
            if not math.isfinite(norm):
                scale = math.nan
            return [g if g is None else g * scale for g in grads]
        if self.clipvalue is not None:
            v = self.clipvalue
            return [g if g is None else np.clip(g, -v, v) for g in grads]
        return grads

    def _update(self, i, p, g, lr):
        raise NotImplementedError

    def _scratch(self, i, p, k=0):
        """Scratch array ``k`` of ``p``'s shape and dtype, made once per parameter (every
        apply has the parameters of the build): the updates run in place, with no
        temporary array per step."""
        a = self._scratch_arrays.get((i, k))
        if a is None:
            a = self._scratch_arrays[i, k] = np.empty_like(p)
        return a

    # config and state ----------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments: ``type(opt)(**opt.get_config())`` is an equal, fresh
        optimizer. A schedule with ``get_config`` appears serialised as a dict."""
        lr = self._learning_rate
        if (isinstance(lr, LearningRateSchedule)
                and registry.lookup(type(lr).__name__, "schedule") is not None):
            lr = registry.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            schedule = registry.lookup(lr.get("class_name"), "schedule")
            if schedule is None:
                raise ValueError(f"expected a learning-rate schedule, one of "
                                 f"{registry.names('schedule')}, got {lr.get('class_name')!r}")
            config["learning_rate"] = schedule.from_config(lr.get("config") or {})
        return cls(**config)

    def get_state(self):
        """Everything an identical continuation needs, as arrays.

        Returns
        -------
        dict of str to ndarray
            ``"iterations"`` (0-d int64) and a copy of every slot array, named
            ``"<slot>/<parameter index>"`` (``"m/0"``, ``"v/0"``, ...). Before the first
            :meth:`apply` there are no slots.
        """
        if self._pending is not None:
            return {k: v.copy() for k, v in self._pending.items()}
        state = {"iterations": np.asarray(self.iterations, dtype=np.int64)}
        for slot, arrays in (self._slots or {}).items():
            for i, a in enumerate(arrays):
                state[f"{slot}/{i}"] = a.copy()
        return state

    def set_state(self, state, params=None):
        """Restore what :meth:`get_state` returned.

        The slot arrays are checked against the parameters at once when the optimizer is
        built or ``params`` is given, else at the next :meth:`apply`; a mismatch raises
        ``ValueError``.

        Parameters
        ----------
        state : dict of str to array_like
        params : list of ndarray, optional
            The parameters the state belongs to.
        """
        if not isinstance(state, dict):
            raise ValueError(f"expected state to be a dict, got {type(state).__name__}")
        if "iterations" not in state:
            raise ValueError(f"expected state to have 'iterations', got keys {sorted(state)}")
        it = np.asarray(state["iterations"])
        whole = np.issubdtype(it.dtype, np.integer) or (
            np.issubdtype(it.dtype, np.floating) and bool(np.all(np.isfinite(it)))
            and bool(np.all(it == np.round(it))))
        if it.shape != () or not whole or it < 0:
            raise ValueError(f"expected state['iterations'] to be a non-negative integer, got "
                             f"{state['iterations']!r}")
        counts = {s: 0 for s in self._slot_names()}
        for key in state:
            if key == "iterations":
                continue
            slot, _, index = key.rpartition("/")
            if slot not in counts or not index.isdigit():
                raise ValueError(f"expected state keys 'iterations' and "
                                 f"'<slot>/<index>' with slot in {sorted(counts)}, got {key!r}")
            counts[slot] += 1
        sizes = set(counts.values())
        if len(sizes) > 1 or any(f"{s}/{i}" not in state for s, n in counts.items()
                                 for i in range(n)):
            raise ValueError(f"expected every slot {sorted(counts)} for parameters 0..n-1, got "
                             f"keys {sorted(state)}")
        pending = {"iterations": np.asarray(int(it), dtype=np.int64)}
        for key, value in state.items():
            if key != "iterations":
                value = np.asarray(value)
                if not np.issubdtype(value.dtype, np.floating):
                    raise ValueError(f"expected state[{key!r}] to be a float array, got dtype "
                                     f"{value.dtype}")
                pending[key] = value.copy()
        self._pending = pending
        self.iterations = int(it)
        if params is not None:
            self.build(params)
        elif self.built:
            self._pending = None
            self._load(pending)

    def _load(self, state):
        """Copy a checked state into the built slots (shapes checked here)."""
        n = len(self._shapes)
        iterations = int(state["iterations"])
        if len(state) == 1:
            # the state of an optimizer that had not updated yet: fresh slots
            if self._slot_names() and iterations != 0:
                raise ValueError(f"expected the slots {list(self._slot_names())} in a state "
                                 f"after {iterations} iterations, got none")
            for slot in self._slot_names():
                for a in self._slots[slot]:
                    a[...] = self._slot_init(slot)
            self.iterations = iterations
            return
        for slot in self._slot_names():
            for i in range(n):
                key = f"{slot}/{i}"
                if key not in state:
                    raise ValueError(f"expected state for {n} parameters, got no {key!r}")
                value = state[key]
                shape = self._shapes[i][0]
                if value.shape != shape:
                    raise ValueError(f"expected state[{key!r}] of shape {shape} (the shape of "
                                     f"parameter {i}), got {value.shape}")
        extra = [k for k in state if k != "iterations"
                 and int(k.rpartition("/")[2]) >= n]
        if extra:
            raise ValueError(f"expected state for {n} parameters, got extra keys {sorted(extra)}")
        for slot in self._slot_names():
            for i in range(n):
                self._slots[slot][i][...] = state[f"{slot}/{i}"]
        self.iterations = iterations

    def __repr__(self):
        params = inspect.signature(type(self).__init__).parameters
        config = {**self.get_config(), "learning_rate": self._learning_rate}
        config = {k: config[k] for k in sorted(config, key=list(params).index)}
        args = [f"{k}={v!r}" for k, v in config.items()
                if not (k == "name" and v == self.default_name)
                and not (k in params and type(params[k].default) is type(v)
                         and params[k].default == v)]
        return f"{type(self).__name__}({', '.join(args)})"


# -- the optimizers -------------------------------------------------------------------------
@registry.serializable("optimizer")
class SGD(Optimizer):
    """Gradient descent, with momentum and Nesterov momentum as Keras writes them.

    Without momentum, :math:`w \\leftarrow w - \\eta g`. With momentum :math:`\\mu > 0` and
    velocity :math:`m` (starting at 0):

    .. math::

        m \\leftarrow \\mu m - \\eta g, \\qquad
        w \\leftarrow \\begin{cases} w + m \\\\
                                    w + \\mu m - \\eta g & \\text{(Nesterov)} \\end{cases}

    Parameters
    ----------
    learning_rate : float or callable, default 0.01
    momentum : float in [0, 1], default 0.0
    nesterov : bool, default False
    clipnorm, global_clipnorm, clipvalue : float, optional
    name : str, optional

    Slots: ``"momentum/<i>"`` when ``momentum > 0``.
    """

    default_name = "SGD"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, clipnorm=None,
                 global_clipnorm=None, clipvalue=None, name=None):
        super().__init__(learning_rate, clipnorm, global_clipnorm, clipvalue, name)
        self.momentum = _real("momentum", momentum, 0, 1)
        self.nesterov = _bool("nesterov", nesterov)

    def _slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, i, p, g, lr):
        lr_g = np.multiply(lr, g, out=self._scratch(i, p))          # lr g
        if self.momentum == 0:
            p -= lr_g                                                # w -= lr g
            return
        mu = p.dtype.type(self.momentum)
        m = self._slots["momentum"][i]
        m *= mu                                                      # m = mu m - lr g
        m -= lr_g
        if self.nesterov:
            step = np.multiply(mu, m, out=self._scratch(i, p, 1))
            step -= lr_g
            p += step                                                # w += mu m - lr g
        else:
            p += m                                                   # w += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@registry.serializable("optimizer")
class Adam(Optimizer):
    """Adam, with Keras's placement of epsilon ("epsilon hat" of Kingma and Ba, added to
    :math:`\\sqrt{v}` before the bias correction), and AMSGrad.

    At step :math:`t = \\mathrm{iterations} + 1`, with :math:`m, v` starting at 0:

    .. math::

        \\alpha = \\eta \\frac{\\sqrt{1 - \\beta_2^t}}{1 - \\beta_1^t}, \\quad
        m \\leftarrow m + (1 - \\beta_1)(g - m), \\quad
        v \\leftarrow v + (1 - \\beta_2)(g^2 - v), \\quad
        w \\leftarrow w - \\frac{\\alpha\\, m}{\\sqrt{v} + \\epsilon}

    With ``amsgrad``, :math:`\\hat v \\leftarrow \\max(\\hat v, v)` replaces :math:`v` in the
    last step.

    Parameters
    ----------
    learning_rate : float or callable, default 0.001
    beta_1, beta_2 : float in [0, 1), default 0.9, 0.999
    epsilon : float >= 0, default 1e-7
    amsgrad : bool, default False
    clipnorm, global_clipnorm, clipvalue : float, optional
    name : str, optional

    Slots: ``"m/<i>"``, ``"v/<i>"`` and, with amsgrad, ``"v_hat/<i>"``.
    """

    default_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, global_clipnorm=None, clipvalue=None, name=None):
        super().__init__(learning_rate, clipnorm, global_clipnorm, clipvalue, name)
        self.beta_1 = _real("beta_1", beta_1, 0, 1, hi_open=True)
        self.beta_2 = _real("beta_2", beta_2, 0, 1, hi_open=True)
        self.epsilon = _real("epsilon", epsilon, 0)
        self.amsgrad = _bool("amsgrad", amsgrad)

    def _slot_names(self):
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _update(self, i, p, g, lr):
        dt = p.dtype.type
        b1, b2, t = dt(self.beta_1), dt(self.beta_2), dt(self.iterations + 1)
        one = dt(1)
        alpha = lr * np.sqrt(one - b2 ** t) / (one - b1 ** t)       # lr sqrt(1-b2^t)/(1-b1^t)
        v_hat = self._slots["v_hat"][i] if self.amsgrad else None
        # m, v (v_hat) and w in one pass (crnn._optim; its NumPy twin for arrays it
        # does not take, e.g. a parameter that is a strided view)
        fused = p.flags.c_contiguous and p.flags.writeable
        kernels = backend.kernels("adam") if fused else reference_optim
        kernels.adam_update(p, g, self._slots["m"][i], self._slots["v"][i], v_hat, alpha,
                            self.beta_1, self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


@registry.serializable("optimizer")
class RMSprop(Optimizer):
    """RMSprop as Keras writes it: epsilon inside the square root, plain momentum on the
    increment, and the centred variant.

    With :math:`v` (and :math:`\\bar g`, :math:`b`) starting at 0:

    .. math::

        v \\leftarrow \\rho v + (1 - \\rho) g^2, \\qquad
        \\Delta = \\frac{\\eta\\, g}{\\sqrt{v + \\epsilon}}
        \\quad\\text{or, centred,}\\quad
        \\bar g \\leftarrow \\rho \\bar g + (1 - \\rho) g, \\;
        \\Delta = \\frac{\\eta\\, g}{\\sqrt{v - \\bar g^2 + \\epsilon}}

    then :math:`w \\leftarrow w - \\Delta`, or with momentum :math:`\\mu > 0`,
    :math:`b \\leftarrow \\mu b + \\Delta` and :math:`w \\leftarrow w - b`.

    Parameters
    ----------
    learning_rate : float or callable, default 0.001
    rho : float in [0, 1), default 0.9
    momentum : float in [0, 1], default 0.0
    epsilon : float >= 0, default 1e-7
    centered : bool, default False
    clipnorm, global_clipnorm, clipvalue : float, optional
    name : str, optional

    Slots: ``"velocity/<i>"``; ``"momentum/<i>"`` when ``momentum > 0``;
    ``"average_gradient/<i>"`` when ``centered``.
    """

    default_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, clipnorm=None, global_clipnorm=None, clipvalue=None,
                 name=None):
        super().__init__(learning_rate, clipnorm, global_clipnorm, clipvalue, name)
        self.rho = _real("rho", rho, 0, 1, hi_open=True)
        self.momentum = _real("momentum", momentum, 0, 1)
        self.epsilon = _real("epsilon", epsilon, 0)
        self.centered = _bool("centered", centered)

    def _slot_names(self):
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        return tuple(names)

    def _update(self, i, p, g, lr):
        dt = p.dtype.type
        rho, one, eps = dt(self.rho), dt(1), dt(self.epsilon)
        v = self._slots["velocity"][i]
        s, increment = self._scratch(i, p), self._scratch(i, p, 1)
        v *= rho                                                     # v = rho v + (1-rho) g^2
        np.multiply(g, g, out=s)
        s *= one - rho
        v += s
        if self.centered:
            a = self._slots["average_gradient"][i]
            a *= rho                                                 # a = rho a + (1-rho) g
            np.multiply(one - rho, g, out=s)
            a += s
            np.multiply(a, a, out=s)
            np.subtract(v, s, out=s)
            s += eps                                                 # v - a^2 + eps
        else:
            np.add(v, eps, out=s)                                    # v + eps
        np.sqrt(s, out=s)
        np.multiply(lr, g, out=increment)
        increment /= s                                               # lr g / sqrt(.)
        if self.momentum > 0:
            b = self._slots["momentum"][i]
            b *= dt(self.momentum)                                   # b = mu b + increment
            b += increment
            p -= b                                                   # w -= b
        else:
            p -= increment                                           # w -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


@registry.serializable("optimizer")
class Adagrad(Optimizer):
    """Adagrad as Keras writes it (epsilon inside the square root).

    With the accumulator :math:`a` starting at ``initial_accumulator_value``:

    .. math::

        a \\leftarrow a + g^2, \\qquad w \\leftarrow w - \\frac{\\eta\\, g}{\\sqrt{a + \\epsilon}}

    Parameters
    ----------
    learning_rate : float or callable, default 0.001
    initial_accumulator_value : float >= 0, default 0.1
    epsilon : float >= 0, default 1e-7
    clipnorm, global_clipnorm, clipvalue : float, optional
    name : str, optional

    Slots: ``"accumulator/<i>"``.
    """

    default_name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 clipnorm=None, global_clipnorm=None, clipvalue=None, name=None):
        super().__init__(learning_rate, clipnorm, global_clipnorm, clipvalue, name)
        self.initial_accumulator_value = _real("initial_accumulator_value",
                                               initial_accumulator_value, 0)
        self.epsilon = _real("epsilon", epsilon, 0)

    def _slot_names(self):
        return ("accumulator",)

    def _slot_init(self, slot):
        return self.initial_accumulator_value

    def _update(self, i, p, g, lr):
        a = self._slots["accumulator"][i]
        s, u = self._scratch(i, p), self._scratch(i, p, 1)
        np.multiply(g, g, out=s)
        a += s                                                       # a += g^2
        np.add(a, p.dtype.type(self.epsilon), out=s)
        np.sqrt(s, out=s)
        np.multiply(lr, g, out=u)
        u /= s
        p -= u                                                       # w -= lr g/sqrt(a+eps)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


# -- lookup and (de)serialisation -----------------------------------------------------------
_NAMES = {name.lower(): registry.lookup(name, "optimizer")
          for name in registry.names("optimizer")}


def get(identifier):
    """Resolve an optimizer: a name (``"sgd"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"``, any
    case) gives a new one with default arguments; an optimizer is returned as it is; a dict
    from :func:`serialize` is deserialised."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"expected an optimizer name, one of {sorted(_NAMES)}, got "
                             f"{identifier!r}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"expected an optimizer name or an Optimizer, got {identifier!r}")


def serialize(optimizer):
    """``{"class_name": ..., "config": ...}`` of an optimizer; :func:`deserialize` rebuilds it
    (without its state: see :meth:`Optimizer.get_state`). A learning rate that is a plain
    callable stays a callable in the config, which only lives in memory."""
    if (not isinstance(optimizer, Optimizer)
            or registry.lookup(type(optimizer).__name__, "optimizer") is None):
        raise ValueError(f"expected one of crnn's optimizers "
                         f"({registry.names('optimizer')}), got {optimizer!r}")
    return registry.serialize(optimizer)


def deserialize(config):
    """Rebuild an optimizer from the output of :func:`serialize`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"expected a dict with 'class_name' and 'config', got {config!r}")
    name = config["class_name"]
    cls = (registry.lookup(name, "optimizer")
           or (_NAMES.get(name.lower()) if isinstance(name, str) else None))
    if cls is None:
        raise ValueError(f"expected class_name to be one of {registry.names('optimizer')}, "
                         f"got {name!r}")
    return cls.from_config(config.get("config") or {})
