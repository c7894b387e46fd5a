"""crnn layers."""
from crnn.layers.base import Layer
from crnn.layers.core import Dense
from crnn.layers.gru import GRU, GRUCell
from crnn.layers.lstm import LSTM, LSTMCell
from crnn.layers.recurrent import RNN, RNNCell
from crnn.layers.simple_rnn import SimpleRNN, SimpleRNNCell

__all__ = ["Dense", "GRU", "GRUCell", "LSTM", "LSTMCell", "Layer", "RNN", "RNNCell", "SimpleRNN",
           "SimpleRNNCell"]
