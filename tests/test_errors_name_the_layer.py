"""Errors say which layer raised them (issue 17, item 8), and summary() wraps a long name
between words, never inside one."""
import numpy as np
import pytest

import crnn


def test_a_layers_error_names_the_layer():
    model = crnn.Sequential([crnn.Embedding(10, 4, name="ids"), crnn.LSTM(3)])
    with pytest.raises(ValueError, match=r"Embedding 'ids': expected integer ids, got a "
                                         r"float32 array holding 0\.5"):
        model.predict(np.full((2, 5, 1), 0.5, np.float32))
    lstm = crnn.LSTM(3, name="enc")
    lstm(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected input with 5 features"):
        lstm(np.zeros((2, 4, 6), np.float32))


def test_set_weights_names_the_layer_and_the_weight():
    dense = crnn.Dense(3, name="head")
    dense.build((None, 4))
    with pytest.raises(ValueError, match=r"Dense 'head', weight 1: expected bias of shape "
                                         r"\(3,\), got \(4,\)"):
        dense.set_weights([np.zeros((4, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"Dense 'head': expected 2 weight arrays"):
        dense.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"Dense 'head', weight 0: expected kernel of real"):
        dense.set_weights([np.zeros((4, 3), complex), np.zeros(3)])


def test_summary_never_cuts_a_name_inside_a_word(capsys):
    model = crnn.Sequential([crnn.Input((40,), dtype="int64"), crnn.Embedding(2000, 32),
                             crnn.Bidirectional(crnn.LSTM(64, return_sequences=True)),
                             crnn.TimeDistributed(crnn.Dense(10, activation="softmax"))])
    model.summary()
    out = capsys.readouterr().out
    assert "(Bidirectional)" in out and "(TimeDistributed)" in out
    words = {w for line in out.splitlines() for w in line.split()}
    for piece in ("Bidirectiona", "l)", "TimeDistribut"):
        assert piece not in words
