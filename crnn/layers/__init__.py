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
from crnn.layers.merge import (Add, Average, Concatenate, Dot, Multiply, Subtract, add,
                               average, concatenate, dot, multiply, subtract)
from crnn.layers.attention import AdditiveAttention, Attention
from crnn.layers.normalization import LayerNormalization
from crnn.layers.reshaping import Permute, Reshape
from crnn.layers.pooling import GlobalAveragePooling1D, GlobalMaxPooling1D

__all__ = ["Activation", "Add", "AdditiveAttention", "Attention", "Average",
           "Bidirectional", "Concatenate", "Dense", "Dot", "Dropout", "Embedding", "Flatten",
           "GRU", "GRUCell", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "LSTM",
           "LSTMCell", "Layer", "LayerNormalization", "Masking", "Multiply", "Permute",
           "RNN", "RNNCell", "RepeatVector", "Reshape", "SimpleRNN", "SimpleRNNCell",
           "StackedRNNCells", "Subtract", "TimeDistributed", "add", "average",
           "concatenate", "dot", "multiply", "subtract"]
