"""crnn.optimizers: each update rule against its formula written out by hand on a small
quadratic, clipping, schedules, dtype and identity of the updated arrays, argument checks,
state round trips, and torch.optim as referee where its formulas coincide with Keras's.
"""
import numpy as np
import pytest

from conftest import assert_close, require_torch
from crnn import optimizers as opt

STEPS = 6


def quadratic(seed=0, dtype=np.float64):
    """Parameters, and the gradient of f(w) = sum_i 0.5 * a_i * (w_i - c_i)^2 at them."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 1, 3)]
    a = [rng.uniform(0.5, 3.0, s) for s in shapes]
    c = [rng.standard_normal(s) for s in shapes]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]

    def grads(ps):
        return [(ai * (p.astype(np.float64) - ci)).astype(p.dtype) for ai, ci, p in
                zip(a, c, ps)]
    return params, grads


def run(optimizer, params, grads, steps=STEPS):
    history = []
    for _ in range(steps):
        optimizer.apply(params, grads(params))
        history.append([p.copy() for p in params])
    return history


def run_by_hand(update, params, grads, steps=STEPS):
    """``update(t, w, g, state) -> new w`` per parameter, t = 0, 1, ..."""
    ws = [p.astype(np.float64).copy() for p in params]
    states = [{} for _ in ws]
    history = []
    for t in range(steps):
        gs = grads(ws)
        ws = [update(t, w, g, s) for w, g, s in zip(ws, gs, states)]
        history.append([w.copy() for w in ws])
    return history


def assert_histories(ours, theirs, dtype=np.float64, scale=1.0):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, dtype, scale=scale, err_msg=f"step {step}, parameter {i}")


# -- the textbook updates -------------------------------------------------------------------
def sgd_rule(lr, momentum=0.0, nesterov=False):
    def update(t, w, g, s):
        if momentum == 0:
            return w - lr * g
        m = momentum * s.get("m", 0) - lr * g            # velocity
        s["m"] = m
        return w + momentum * m - lr * g if nesterov else w + m
    return update


def adam_rule(lr, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False):
    def update(t, w, g, s):
        m = b1 * s.get("m", 0) + (1 - b1) * g
        v = b2 * s.get("v", 0) + (1 - b2) * g * g
        s["m"], s["v"] = m, v
        if amsgrad:
            v = s["v_hat"] = np.maximum(s.get("v_hat", 0), v)
        alpha = lr * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        return w - alpha * m / (np.sqrt(v) + eps)
    return update


def rmsprop_rule(lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    def update(t, w, g, s):
        v = s["v"] = rho * s.get("v", 0) + (1 - rho) * g * g
        if centered:
            a = s["a"] = rho * s.get("a", 0) + (1 - rho) * g
            step = lr * g / np.sqrt(v - a * a + eps)
        else:
            step = lr * g / np.sqrt(v + eps)
        if momentum > 0:
            step = s["b"] = momentum * s.get("b", 0) + step
        return w - step
    return update


def adagrad_rule(lr, init=0.1, eps=1e-7):
    def update(t, w, g, s):
        acc = s["acc"] = s.get("acc", init) + g * g
        return w - lr * g / np.sqrt(acc + eps)
    return update


CASES = [
    (lambda: opt.SGD(learning_rate=0.1), sgd_rule(0.1)),
    (lambda: opt.SGD(learning_rate=0.05, momentum=0.9), sgd_rule(0.05, 0.9)),
    (lambda: opt.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
     sgd_rule(0.05, 0.8, True)),
    (lambda: opt.Adam(learning_rate=0.1), adam_rule(0.1)),
    (lambda: opt.Adam(learning_rate=0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-3),
     adam_rule(0.05, 0.8, 0.9, 1e-3)),
    (lambda: opt.Adam(learning_rate=0.1, amsgrad=True), adam_rule(0.1, amsgrad=True)),
    (lambda: opt.RMSprop(learning_rate=0.01), rmsprop_rule(0.01)),
    (lambda: opt.RMSprop(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-4),
     rmsprop_rule(0.01, 0.8, 0.5, 1e-4)),
    (lambda: opt.RMSprop(learning_rate=0.01, centered=True), rmsprop_rule(0.01, centered=True)),
    (lambda: opt.RMSprop(learning_rate=0.01, momentum=0.9, centered=True),
     rmsprop_rule(0.01, momentum=0.9, centered=True)),
    (lambda: opt.Adagrad(learning_rate=0.5), adagrad_rule(0.5)),
    (lambda: opt.Adagrad(learning_rate=0.5, initial_accumulator_value=1.0, epsilon=1e-3),
     adagrad_rule(0.5, 1.0, 1e-3)),
]
IDS = [repr(make()) for make, _ in CASES]


@pytest.mark.parametrize("make, rule", CASES, ids=IDS)
def test_update_matches_formula(make, rule):
    params, grads = quadratic(1)
    expected = run_by_hand(rule, params, grads)
    optimizer = make()
    assert_histories(run(optimizer, params, grads), expected)
    assert optimizer.iterations == STEPS


@pytest.mark.parametrize("make, rule", CASES, ids=IDS)
def test_float32_in_place_same_objects(make, rule):
    params, grads = quadratic(2, np.float32)
    originals = list(params)
    expected = run_by_hand(rule, params, grads)
    optimizer = make()
    history = run(optimizer, params, grads)
    assert all(p is q for p, q in zip(params, originals))
    assert all(p.dtype == np.float32 for p in params)
    assert all(a.dtype == np.float32 for k, a in optimizer.get_state().items()
               if k != "iterations")
    assert_histories(history, expected, np.float32, scale=20)


def test_float32_arithmetic_is_float32():
    """The update is computed in the parameter's dtype, not in float64 and rounded."""
    w = np.array([1.0, -2.0, 3.3], dtype=np.float32)
    g = np.array([0.1, 0.7, -1.3], dtype=np.float32)
    lr = 0.1
    expected = w - np.float32(lr) * g
    opt.SGD(learning_rate=lr).apply([w], [g])
    assert np.array_equal(w, expected)
    # Adam's first step in float32, written with float32 scalars
    w = np.array([1.0, -2.0, 3.3], dtype=np.float32)
    f = np.float32
    m = (g - 0) * (f(1) - f(0.9))
    v = (g * g - 0) * (f(1) - f(0.999))
    alpha = f(lr) * np.sqrt(f(1) - f(0.999) ** f(1)) / (f(1) - f(0.9) ** f(1))
    expected = w - (m * alpha) / (np.sqrt(v) + f(1e-7))
    opt.Adam(learning_rate=lr).apply([w], [g])
    assert np.array_equal(w, expected)


def test_float64_gradients_for_float32_params_are_cast():
    w = np.ones(3, dtype=np.float32)
    opt.Adam(learning_rate=0.1).apply([w], [np.array([1.0, -1.0, 0.5])])
    assert w.dtype == np.float32


def test_none_gradient_skips_parameter():
    params, grads = quadratic(3)
    optimizer = opt.Adam(learning_rate=0.1)
    optimizer.apply(params, grads(params))
    before = [p.copy() for p in params]
    state = optimizer.get_state()
    g = grads(params)
    g[1] = None
    optimizer.apply(params, g)
    assert np.array_equal(params[1], before[1])
    assert not np.array_equal(params[0], before[0])
    after = optimizer.get_state()
    assert np.array_equal(after["m/1"], state["m/1"]) and np.array_equal(after["v/1"],
                                                                          state["v/1"])
    assert optimizer.iterations == 2
    with pytest.raises(ValueError, match="expected at least one gradient"):
        optimizer.apply(params, [None, None, None])


# -- clipping -------------------------------------------------------------------------------
def clip_problem():
    params = [np.zeros(2), np.zeros((1, 2))]
    grads = [np.array([3.0, 4.0]), np.array([[0.0, 1.0]])]   # norms 5 and 1, joint sqrt(26)
    return params, grads


def test_clipnorm_clips_each_gradient():
    params, grads = clip_problem()
    opt.SGD(learning_rate=1.0, clipnorm=2.0).apply(params, grads)
    np.testing.assert_allclose(params[0], -np.array([3.0, 4.0]) * 2 / 5)
    np.testing.assert_allclose(params[1], -grads[1])           # norm 1 <= 2: untouched


def test_global_clipnorm_scales_all_gradients():
    params, grads = clip_problem()
    opt.SGD(learning_rate=1.0, global_clipnorm=2.0).apply(params, grads)
    scale = 2 / np.sqrt(26)
    np.testing.assert_allclose(params[0], -grads[0] * scale)
    np.testing.assert_allclose(params[1], -grads[1] * scale)
    params, grads = clip_problem()
    opt.SGD(learning_rate=1.0, global_clipnorm=10.0).apply(params, grads)
    np.testing.assert_allclose(params[0], -grads[0])           # under the limit: untouched
    # a non-finite joint norm makes every gradient NaN, as in Keras
    params, grads = clip_problem()
    grads[0][0] = np.inf
    opt.SGD(learning_rate=1.0, global_clipnorm=1.0).apply(params, grads)
    assert np.all(np.isnan(params[0])) and np.all(np.isnan(params[1]))


def test_clipvalue_clips_elements():
    params, grads = clip_problem()
    opt.SGD(learning_rate=1.0, clipvalue=2.0).apply(params, grads)
    np.testing.assert_allclose(params[0], [-2.0, -2.0])
    np.testing.assert_allclose(params[1], [[0.0, -1.0]])


def test_clipping_happens_before_the_momentum():
    params, grads = clip_problem()
    optimizer = opt.SGD(learning_rate=0.5, momentum=0.9, clipnorm=1.0)
    optimizer.apply(params, grads)
    optimizer.apply(params, grads)
    g = np.array([0.6, 0.8])
    m1 = -0.5 * g
    m2 = 0.9 * m1 - 0.5 * g
    np.testing.assert_allclose(params[0], m1 + m2)
    np.testing.assert_allclose(optimizer.get_state()["momentum/0"], m2)


@pytest.mark.parametrize("make, rule", CASES[1::3], ids=IDS[1::3])
def test_global_clipnorm_for_every_optimizer(make, rule):
    """The hand-written rule fed the globally clipped gradients."""
    params, grads = quadratic(4)

    def clipped(ps):
        gs = grads(ps)
        norm = np.sqrt(sum(np.sum(g * g) for g in gs))
        return [g * min(1.0, 0.5 / norm) for g in gs]
    expected = run_by_hand(rule, params, clipped)
    optimizer = type(make())(**{**make().get_config(), "global_clipnorm": 0.5})
    assert_histories(run(optimizer, params, grads), expected)


# -- learning rates -------------------------------------------------------------------------
def test_schedules():
    s = opt.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    assert [s(t) for t in (0, 2, 4, 8)] == pytest.approx([0.1, 0.1 * 0.5 ** 0.5, 0.05, 0.025])
    s = opt.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [s(t) for t in (0, 3, 4, 7, 8)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    s = opt.InverseTimeDecay(0.1, decay_steps=2, decay_rate=0.5)
    assert [s(t) for t in (0, 1, 2, 6)] == pytest.approx([0.1, 0.1 / 1.25, 0.1 / 1.5, 0.04])
    s = opt.InverseTimeDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True)
    assert [s(t) for t in (0, 1, 2, 3)] == pytest.approx([0.1, 0.1, 0.1 / 1.5, 0.1 / 1.5])
    for bad in ({"decay_steps": 0}, {"decay_rate": -1.0}, {"initial_learning_rate": -0.1}):
        args = {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5, **bad}
        with pytest.raises(ValueError, match="expected"):
            opt.ExponentialDecay(**args)


@pytest.mark.parametrize("schedule", [
    opt.ExponentialDecay(0.2, decay_steps=2, decay_rate=0.5),
    opt.InverseTimeDecay(0.2, decay_steps=1, decay_rate=1.0, staircase=True),
    lambda step: 0.1 / (step + 1),
], ids=["exponential", "inverse-time", "lambda"])
def test_schedule_is_read_at_the_step_before_the_update(schedule):
    params, grads = quadratic(5)
    ws = [p.copy() for p in params]
    expected = []
    for t in range(STEPS):
        gs = grads(ws)
        ws = [w - schedule(t) * g for w, g in zip(ws, gs)]
        expected.append([w.copy() for w in ws])
    optimizer = opt.SGD(learning_rate=schedule)
    assert optimizer.learning_rate == pytest.approx(schedule(0))
    assert_histories(run(optimizer, params, grads), expected)
    assert optimizer.learning_rate == pytest.approx(schedule(STEPS))


def test_adam_with_schedule_matches_formula():
    schedule = opt.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.7)
    params, grads = quadratic(6)
    expected = run_by_hand(lambda t, w, g, s: adam_rule(schedule(t))(t, w, g, s), params, grads)
    assert_histories(run(opt.Adam(learning_rate=schedule), params, grads), expected)


# -- argument checks ------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: opt.SGD(learning_rate=-0.1), r"learning_rate in \[0"),
    (lambda: opt.SGD(learning_rate="fast"), "learning_rate to be a finite number"),
    (lambda: opt.Adam(learning_rate=float("nan")), "finite"),
    (lambda: opt.SGD(momentum=1.5), r"momentum in \[0.0, 1.0\]|momentum in \[0, 1\]"),
    (lambda: opt.SGD(momentum=-0.1), "momentum"),
    (lambda: opt.SGD(nesterov="yes"), "nesterov to be True or False"),
    (lambda: opt.Adam(beta_1=1.0), "beta_1"),
    (lambda: opt.Adam(beta_2=-0.5), "beta_2"),
    (lambda: opt.Adam(epsilon=-1e-7), "epsilon"),
    (lambda: opt.Adam(amsgrad=1), "amsgrad"),
    (lambda: opt.RMSprop(rho=1.0), "rho"),
    (lambda: opt.RMSprop(momentum=2.0), "momentum"),
    (lambda: opt.RMSprop(centered="no"), "centered"),
    (lambda: opt.Adagrad(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: opt.SGD(clipnorm=1.0, global_clipnorm=1.0), "at most one of clipnorm"),
    (lambda: opt.Adam(clipnorm=1.0, clipvalue=1.0), "at most one"),
    (lambda: opt.Adam(clipnorm=0.0), "clipnorm in"),
    (lambda: opt.Adam(clipvalue=-1.0), "clipvalue in"),
    (lambda: opt.Adam(name=3), "name"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match="expected") as info:
        make()
    assert info.match(match)


def test_bad_apply_arguments():
    params = [np.zeros((2, 3)), np.zeros(3)]
    optimizer = opt.Adam()
    with pytest.raises(ValueError, match=r"expected grads\[1\] of shape \(3,\).*got \(4,\)"):
        optimizer.apply(params, [np.zeros((2, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match="expected a list of 2 gradients.*got 1"):
        optimizer.apply(params, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"expected params\[0\] to have dtype float32 or"):
        optimizer.apply([np.zeros(3, dtype=int)], [np.zeros(3)])
    with pytest.raises(ValueError, match=r"expected params\[0\] to be a numpy.ndarray"):
        optimizer.apply([[0.0, 1.0]], [np.zeros(2)])
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        optimizer.apply([frozen], [np.zeros(3)])
    assert optimizer.iterations == 0 and not optimizer.built
    optimizer.apply(params, [np.ones((2, 3)), np.ones(3)])
    with pytest.raises(ValueError, match="expected the 2 parameters .* got 3"):
        optimizer.apply(params + [np.zeros(1)], [None, None, np.ones(1)])
    with pytest.raises(ValueError, match=r"expected params\[1\] of shape \(3,\)"):
        optimizer.apply([params[0], np.zeros(4)], [None, np.ones(4)])


# -- state, config, lookup ------------------------------------------------------------------
@pytest.mark.parametrize("make", [make for make, _ in CASES] + [
    lambda: opt.SGD(learning_rate=opt.ExponentialDecay(0.1, 2, 0.5), momentum=0.5),
    lambda: opt.Adam(learning_rate=opt.InverseTimeDecay(0.1, 1, 0.3), clipnorm=1.0)],
    ids=IDS + ["SGD-schedule", "Adam-schedule"])
def test_state_round_trip_continues_identically(make):
    params, grads = quadratic(7, np.float32)
    first = make()
    run(first, params, grads, steps=3)
    state = first.get_state()
    assert int(state["iterations"]) == 3
    assert all(isinstance(v, np.ndarray) for v in state.values())
    copies = [p.copy() for p in params]
    second = opt.deserialize(opt.serialize(first))
    second.set_state(state)
    assert second.iterations == 3
    a = run(first, params, grads)
    b = run(second, copies, grads)
    for x, y in zip(a, b):
        for p, q in zip(x, y):
            assert np.array_equal(p, q)
    # get_state gives copies
    before = first.get_state()
    for v in first.get_state().values():
        v[...] = 0
    after = first.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert first.iterations == 3 + STEPS


def test_state_names():
    params, grads = quadratic(8)
    expected = {
        opt.SGD(): [],
        opt.SGD(momentum=0.9): ["momentum"],
        opt.Adam(): ["m", "v"],
        opt.Adam(amsgrad=True): ["m", "v", "v_hat"],
        opt.RMSprop(): ["velocity"],
        opt.RMSprop(momentum=0.5, centered=True): ["velocity", "momentum", "average_gradient"],
        opt.Adagrad(): ["accumulator"],
    }
    for optimizer, slots in expected.items():
        assert optimizer.get_state() == {"iterations": 0}
        optimizer.apply(params, grads(params))
        keys = {"iterations"} | {f"{s}/{i}" for s in slots for i in range(3)}
        assert set(optimizer.get_state()) == keys
    # Adagrad's accumulator starts at initial_accumulator_value
    optimizer = opt.Adagrad(initial_accumulator_value=0.3)
    optimizer.build(params)
    assert np.all(optimizer.get_state()["accumulator/2"] == 0.3)


def test_set_state_checks():
    params, grads = quadratic(9)
    source = opt.Adam()
    source.apply(params, grads(params))
    state = source.get_state()

    bad = dict(state)
    bad["m/0"] = np.zeros((5, 5))
    pending = opt.Adam()
    pending.set_state(bad)                       # not built: checked at the next apply
    with pytest.raises(ValueError, match=r"expected state\['m/0'\] of shape \(3, 4\)"):
        pending.apply(params, grads(params))
    with pytest.raises(ValueError, match="shape"):
        opt.Adam().set_state(bad, params=params)  # or at once with the parameters
    built = opt.Adam()
    built.build(params)
    with pytest.raises(ValueError, match="shape"):
        built.set_state(bad)                     # or at once when built
    with pytest.raises(ValueError, match="expected state for 2 parameters"):
        opt.Adam().set_state(state, params=params[:2])
    with pytest.raises(ValueError, match="'iterations'"):
        opt.Adam().set_state({k: v for k, v in state.items() if k != "iterations"})
    with pytest.raises(ValueError, match="non-negative integer"):
        opt.Adam().set_state({**state, "iterations": np.array(-1)})
    with pytest.raises(ValueError, match="slot in"):
        opt.Adam().set_state({**state, "momentum/0": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="every slot"):
        opt.Adam().set_state({k: v for k, v in state.items() if k != "v/1"})
    with pytest.raises(ValueError, match="slots"):
        opt.Adam().set_state({"iterations": np.array(4)}, params=params)
    # the state of an optimizer that never updated restores to fresh slots
    fresh = opt.Adam()
    fresh.set_state({"iterations": np.array(0)}, params=params)
    assert np.all(fresh.get_state()["v/2"] == 0)


def test_config_round_trip_and_lookup():
    optimizers = [opt.SGD(learning_rate=0.3, momentum=0.5, nesterov=True, clipvalue=1.0),
                  opt.Adam(beta_2=0.99, amsgrad=True, global_clipnorm=2.0, name="a"),
                  opt.RMSprop(rho=0.8, momentum=0.1, centered=True),
                  opt.Adagrad(initial_accumulator_value=0.5, epsilon=1e-5),
                  opt.Adam(learning_rate=opt.ExponentialDecay(0.1, 10, 0.9, staircase=True))]
    for o in optimizers:
        again = type(o).from_config(o.get_config())
        assert repr(again) == repr(o)
        data = opt.serialize(o)
        assert data["class_name"] == type(o).__name__
        back = opt.deserialize(data)
        assert back.get_config() == o.get_config() and opt.get(data).get_config() == \
            o.get_config()
    assert opt.serialize(optimizers[-1])["config"]["learning_rate"] == {
        "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.1, "decay_steps": 10.0, "decay_rate": 0.9,
                   "staircase": True, "name": "ExponentialDecay"}}
    assert repr(optimizers[0]) == \
        "SGD(learning_rate=0.3, momentum=0.5, nesterov=True, clipvalue=1.0)"
    assert repr(opt.Adam()) == "Adam()"
    for name, cls in [("sgd", opt.SGD), ("SGD", opt.SGD), ("Adam", opt.Adam),
                      ("rmsprop", opt.RMSprop), ("ADAGRAD", opt.Adagrad)]:
        assert type(opt.get(name)) is cls
    assert opt.get("adam").name == "adam" and opt.get("sgd").learning_rate == 0.01
    o = opt.RMSprop()
    assert opt.get(o) is o
    with pytest.raises(ValueError, match=r"expected an optimizer name, one of \['adagrad', "
                                         r"'adam', 'rmsprop', 'sgd'\], got 'lbfgs'"):
        opt.get("lbfgs")
    with pytest.raises(ValueError, match="expected"):
        opt.get(0.1)
    with pytest.raises(ValueError, match="class_name"):
        opt.deserialize({"class_name": "Nadam", "config": {}})


# -- torch.optim as referee -----------------------------------------------------------------
# Where the formulas coincide with a constant learning rate:
# - SGD (momentum, Nesterov, dampening 0): Keras's velocity m = mu m - lr g is -lr times
#   torch's buffer b = mu b + g, so the steps are the same.
# - Adam / AMSGrad: Keras adds epsilon to sqrt(v) before the bias correction, torch after
#   it, so the two agree only with epsilon = 0 (both are then lr m_hat / sqrt(v_hat)).
# - RMSprop (momentum, centred): Keras puts epsilon inside the square root, torch outside;
#   with epsilon = 0 they agree, and torch's momentum buffer times lr is Keras's.
# - Adagrad: Keras puts epsilon inside the square root and starts the accumulator at 0.1;
#   with epsilon = 0, lr_decay = 0 and initial_accumulator_value = 0.1 in both they agree.
TORCH_CASES = [
    ("SGD", dict(learning_rate=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(learning_rate=0.05, momentum=0.9, nesterov=True),
     dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(learning_rate=0.1), dict(lr=0.1)),
    ("Adam", dict(learning_rate=0.05, epsilon=0.0), dict(lr=0.05, eps=0.0)),
    ("Adam", dict(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=0.0, amsgrad=True),
     dict(lr=0.05, betas=(0.8, 0.95), eps=0.0, amsgrad=True)),
    ("RMSprop", dict(learning_rate=0.01, rho=0.9, epsilon=0.0), dict(lr=0.01, alpha=0.9, eps=0.0)),
    ("RMSprop", dict(learning_rate=0.01, rho=0.8, momentum=0.7, epsilon=0.0, centered=True),
     dict(lr=0.01, alpha=0.8, momentum=0.7, eps=0.0, centered=True)),
    ("Adagrad", dict(learning_rate=0.3, epsilon=0.0),
     dict(lr=0.3, eps=0.0, initial_accumulator_value=0.1)),
]


@pytest.mark.parametrize("name, ours, theirs", TORCH_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TORCH_CASES)])
def test_against_torch_optim(name, ours, theirs):
    torch = require_torch()
    params, grads = quadratic(10)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    torch_opt = getattr(torch.optim, name)(tparams, **theirs)
    optimizer = getattr(opt, name)(**ours)
    for step in range(50):
        gs = grads(params)
        optimizer.apply(params, gs)
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        torch_opt.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            assert_close(p, tp.detach().numpy(), np.float64, scale=100,
                         err_msg=f"step {step}, parameter {i}")
