"""crnn layers."""
from crnn.layers.base import Layer
from crnn.layers.simple_rnn import SimpleRNN, SimpleRNNCell

__all__ = ["Layer", "SimpleRNN", "SimpleRNNCell"]
