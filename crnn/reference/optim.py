"""Optimizer updates in NumPy: the specification of ``crnn._optim``.

One parameter array ``p`` and its gradient ``g`` (any shape, one float dtype), updated in
place together with the optimizer's slots; scalars come in the parameter's dtype, computed
by the optimizer (:mod:`crnn.optimizers`).
"""
import numpy as np


def adam_update(p, g, m, v, v_hat, alpha, beta_1, beta_2, epsilon):
    """One Adam step (Keras's: epsilon added to ``sqrt(v)``), in place.

    ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``; ``v_hat`` is None, or (AMSGrad)
    the running maximum of ``v`` that replaces ``v`` in the step.
    """
    dt = p.dtype.type
    one = dt(1)
    m += (g - m) * (one - dt(beta_1))                     # 1. m += (g - m)(1 - b1)
    v += (g * g - v) * (one - dt(beta_2))                 # 2. v += (g^2 - v)(1 - b2)
    if v_hat is not None:
        np.maximum(v_hat, v, out=v_hat)                   # 3. v_hat = max(v_hat, v)
        v = v_hat
    p -= (m * dt(alpha)) / (np.sqrt(v) + dt(epsilon))     # 4. w -= alpha m/(sqrt v + eps)
