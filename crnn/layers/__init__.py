"""crnn layers."""
from crnn.layers.base import Layer
from crnn.layers.basic import (Activation, Dropout, Embedding, Flatten, Masking,
                               RepeatVector)
from crnn.layers.cells import StackedRNNCells
from crnn.layers.core import Dense
from crnn.layers.gru import GRU, GRUCell
from crnn.layers.lstm import LSTM, LSTMCell
from crnn.layers.recurrent import RNN, RNNCell
from crnn.layers.simple_rnn import SimpleRNN, SimpleRNNCell
from crnn.layers.wrappers import Bidirectional, TimeDistributed

__all__ = ["Activation", "Bidirectional", "Dense", "Dropout", "Embedding", "Flatten", "GRU",
           "GRUCell", "LSTM", "LSTMCell", "Layer", "Masking", "RNN", "RNNCell",
           "RepeatVector", "SimpleRNN", "SimpleRNNCell", "StackedRNNCells",
           "TimeDistributed"]
