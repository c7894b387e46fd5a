"""The NumPy specification of every crnn kernel, one module per cell type.

Each function here has the name, signature and results of its fast twin in ``src/`` and
defines what that twin must compute. It is written to be read: one loop over time,
batch-first arrays, backward mirroring forward line by line in reverse, derivatives taken
from stored outputs. Select it for a layer with ``backend="reference"`` or for everything
with ``crnn.set_backend("reference")``.

Notation: ``B`` batch, ``T`` time steps, ``D`` input features, ``H`` units; ``x_t`` is
``x[:, t]``, ``h_{t-1}`` the state before step t (``h0`` before the first), ``m`` the
recurrent-dropout mask; ``dh_next`` the gradient reaching ``h_t`` from later steps.
"""
from crnn.reference.embedding import embedding_backward
from crnn.reference.gru import gru_backward, gru_forward
from crnn.reference.lstm import lstm_backward, lstm_forward
from crnn.reference.simple_rnn import simple_rnn_backward, simple_rnn_forward

__all__ = ["embedding_backward", "gru_backward", "gru_forward", "lstm_backward", "lstm_forward",
           "simple_rnn_backward", "simple_rnn_forward"]
