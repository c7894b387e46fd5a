"""crnn: recurrent neural networks on the CPU.

Cython kernels over BLAS run the time loop and backpropagation through time; every kernel
has a NumPy twin in :mod:`crnn.reference` that defines what it computes.
"""
try:
    from crnn import _blas  # noqa: F401  (the first compiled module: is the build here?)
except ImportError:   # pragma: no cover - depends on how crnn was installed
    import os as _os
    raise ImportError(
        f"crnn's compiled kernels (crnn._blas and the others) are missing from "
        f"{_os.path.dirname(__file__)}. "
        f"This is a source checkout that has not been built: build it in place with "
        f"'pip install -e .' (or 'python setup.py build_ext --inplace'), or run from "
        f"another folder so that Python imports the installed crnn instead") from None

from crnn import (callbacks, constraints, losses, metrics, ops, optimizers, reference,
                  regularizers, saving, streaming, utils)
from crnn.backend import get_backend, set_backend
from crnn.engine import GradientTape, Tensor, no_grad
from crnn.layers import (GRU, LSTM, RNN, Activation, Add, AdditiveAttention, Attention,
                         Average, Bidirectional, Concatenate, Dense, Dot, Dropout,
                         Embedding, Flatten, GlobalAveragePooling1D, GlobalMaxPooling1D,
                         GRUCell, Layer, LayerNormalization, LSTMCell, Masking, Multiply,
                         Permute, RepeatVector, Reshape, SimpleRNN, SimpleRNNCell,
                         StackedRNNCells, Subtract, TimeDistributed)
from crnn.models import Input, Model, Sequential
from crnn.saving import load_model, save_model
from crnn.streaming import generate
from crnn.cores import get_num_threads, set_num_threads, threads
from crnn import interop
from crnn._version import __version__

__all__ = ["Activation", "Add", "AdditiveAttention", "Attention", "Average",
           "Bidirectional", "Concatenate", "Dense", "Dot", "Dropout", "Embedding", "Flatten",
           "GRU", "GRUCell", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "GradientTape",
           "Input", "LSTM", "LSTMCell", "Layer", "LayerNormalization", "Masking", "Model",
           "Multiply", "Permute", "RNN", "RepeatVector", "Reshape", "Sequential",
           "SimpleRNN", "SimpleRNNCell", "StackedRNNCells", "Subtract", "Tensor",
           "TimeDistributed", "callbacks", "constraints", "get_backend", "load_model",
           "losses", "metrics", "generate", "get_num_threads", "interop", "no_grad", "ops",
           "optimizers", "reference", "regularizers", "save_model", "saving", "set_backend",
           "set_num_threads", "streaming", "threads", "utils"]
