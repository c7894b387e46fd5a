"""crnn: recurrent neural networks on the CPU.

Cython kernels over BLAS run the time loop and backpropagation through time; every kernel
has a NumPy twin in :mod:`crnn.reference` that defines what it computes.
"""
from crnn import reference
from crnn.backend import get_backend, set_backend
from crnn.layers import GRU, LSTM, GRUCell, Layer, LSTMCell, SimpleRNN, SimpleRNNCell

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "Layer", "SimpleRNN", "SimpleRNNCell",
           "get_backend", "reference", "set_backend"]
