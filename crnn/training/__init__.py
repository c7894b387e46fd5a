"""Training: Keras's ``compile``/``fit``/``evaluate``/``predict`` and ``summary`` on the tape.

One training step, for every kind of model::

    with GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = sum_k w_k * LossOp(loss_k)([y_k, y_pred_k, sample_weight])   # per output k
        loss = loss + sum(model.losses)        # weight and activity penalties
    grads = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply(model.trainable_weights, grads)
    model.apply_constraints()                  # each constrained weight, projected

Each loss function returns its value *and* ``d loss / d y_pred`` (see :mod:`crnn.losses`);
:class:`LossOp` puts that pair on the tape as one primitive, so the tape's backward pass
starts from the loss and reaches every weight.

Numbers are reported as Keras reports them: a batch's loss is the loss function's value
(its mean over the batch's samples and steps, Keras's ``sum_over_batch_size``); the
epoch's ``loss`` is the mean of the batch losses **weighted by batch size**, so a short
last batch counts in proportion to its samples; metrics are running means over every
sample of the epoch. Batch logs hold the running values so far, epoch logs the final
ones plus ``val_*`` for the validation data.

The package, bottom to top: :mod:`~crnn.training.data` (the arrays of a run, batches,
truncated BPTT's windows), :mod:`~crnn.training.sources` (batches read one at a time from
a :class:`crnn.utils.PyDataset`, a generator or any iterable), :mod:`~crnn.training.compile` (:class:`LossOp`, the losses and
metrics per output), :mod:`~crnn.training.tbptt` (stateful layers and truncated BPTT),
:mod:`~crnn.training.summary` (``model.summary()``), :mod:`~crnn.training.distributed`
(data-parallel ``fit`` and ``evaluate`` over the processes of :mod:`crnn.distributed`) and
:mod:`~crnn.training.trainer`
(:class:`Trainer`: ``fit``, ``evaluate``, ``predict``; a base of :class:`crnn.Model`, it
imports nothing from :mod:`crnn.models`).
"""
from crnn.training.compile import LossOp
from crnn.training.data import Data
from crnn.training.summary import note_inputs
from crnn.training.trainer import Trainer

__all__ = ["Data", "LossOp", "Trainer", "note_inputs"]
