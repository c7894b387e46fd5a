"""Sequence to sequence: an encoder-decoder that learns to add, ``"123+45"`` -> ``"168"``.

Task
    Read an addition of two random whole numbers of up to ``digits`` digits, as a string,
    and write their sum: the input and output have different lengths, and every digit of
    the answer depends on the whole input (the carries). Held-out problems are pairs never
    seen in training.
Model
    Encoder-decoder (Sutskever et al., 2014; the Keras seq2seq tutorial). The encoder,
    ``Embedding -> LSTM(return_state=True)``, reads the question (reversed, which puts its
    last digits next to the answer's first) and keeps only its final state ``[h, c]``. The
    decoder, ``Embedding -> LSTM(return_sequences=True)`` with ``initial_state=[h, c]``
    (the functional API), then ``TimeDistributed(Dense(V, softmax))``, writes the answer
    one character at a time. Training uses teacher forcing: the decoder reads the true
    answer shifted right by a start symbol and predicts it shifted left (sparse
    categorical cross-entropy per step, padding masked by ``sample_weight``; Adam, its
    learning rate decaying tenfold over the full form's training). At inference
    the decoder reads its own previous prediction instead (greedy decoding), carrying its
    state from step to step through a second pair of models that share the trained layers.
    ``cell="GRU"`` swaps both recurrent layers (state ``[h]``).
Reports
    Exact-match accuracy on held-out problems (every character of the answer right)
    against the baseline of always answering the most frequent sum of the training set;
    per-character accuracy; the training curves; a few decoded examples.
"""
import time

import numpy as np

import crnn
from crnn.examples import Result, _plots

NAME = "seq2seq"
TITLE = "encoder-decoder: adding numbers written as strings"

PAD, START, END = " ", "^", "$"
ALPHABET = PAD + START + END + "0123456789+"
INDEX = {ch: i for i, ch in enumerate(ALPHABET)}


def problems(n, digits, rng, exclude=None):
    """``n`` distinct pairs ``(a, b)``, each below ``10**digits``, none in ``exclude``."""
    seen, pairs = set(exclude or ()), []
    limit = 10 ** digits
    while len(pairs) < n:
        a, b = (int(v) for v in rng.integers(0, limit, size=2))
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((a, b))
    return pairs


def encode(pairs, digits):
    """Questions (reversed, padded) ``(n, 2*digits+1)``, decoder inputs and targets
    ``(n, digits+2)`` and the targets' mask (0 on padding after the end symbol)."""
    t_in, t_out = 2 * digits + 1, digits + 2
    q = np.zeros((len(pairs), t_in), dtype=np.int64)
    dec_in = np.zeros((len(pairs), t_out), dtype=np.int64)
    dec_out = np.zeros((len(pairs), t_out), dtype=np.int64)
    for i, (a, b) in enumerate(pairs):
        question = f"{a}+{b}".ljust(t_in)[::-1]
        answer = str(a + b)
        q[i] = [INDEX[ch] for ch in question]
        dec_in[i] = [INDEX[ch] for ch in (START + answer).ljust(t_out)]
        dec_out[i] = [INDEX[ch] for ch in (answer + END).ljust(t_out)]
    mask = (np.arange(t_out)[None, :] <= (dec_out == INDEX[END]).argmax(axis=1)[:, None])
    return q, dec_in, dec_out, mask.astype("float32")


def build(cell, units, t_in, seed, steps, decay):
    """The training model and the two inference models (encoder; one decoder step).
    The learning rate decays by the factor ``decay`` over the ``steps`` training steps."""
    V = len(ALPHABET)
    rnn = getattr(crnn, cell)
    question = crnn.Input(shape=(t_in,), name="question")
    encoded = crnn.Embedding(V, 16, seed=seed)(question)
    states = rnn(units, return_state=True, seed=seed + 1, name="encoder")(encoded)[1:]
    answer_in = crnn.Input(shape=(None,), name="answer_in")
    embed = crnn.Embedding(V, 16, seed=seed + 2)
    decoder = rnn(units, return_sequences=True, return_state=True, seed=seed + 3,
                  name="decoder")
    head = crnn.TimeDistributed(crnn.Dense(V, activation="softmax", seed=seed + 4))
    train = crnn.Model([question, answer_in],
                       head(decoder(embed(answer_in), initial_state=states)[0]))
    schedule = crnn.optimizers.ExponentialDecay(0.005, decay_steps=steps, decay_rate=decay)
    train.compile(optimizer=crnn.optimizers.Adam(learning_rate=schedule, clipnorm=5.0),
                  loss="sparse_categorical_crossentropy")
    encoder = crnn.Model(question, states)
    state_in = [crnn.Input(shape=(units,), name=f"state_{k}") for k in range(len(states))]
    out, *new_states = decoder(embed(answer_in), initial_state=state_in)
    step = crnn.Model([answer_in] + state_in, [head(out)] + new_states)
    return train, encoder, step


def greedy_decode(encoder, step, q, max_len):
    """Answers as strings: from the encoder's state, feed each predicted character back."""
    states = encoder.predict(q, batch_size=512)
    states = states if isinstance(states, list) else [states]
    token = np.full((len(q), 1), INDEX[START], dtype=np.int64)
    chars = []
    for _ in range(max_len):
        probs, *states = step.predict([token] + states, batch_size=512)
        token = probs[:, -1].argmax(axis=-1)[:, None]
        chars.append(token[:, 0])
    out = []
    for row in np.stack(chars, axis=1):
        text = "".join(ALPHABET[i] for i in row)
        out.append(text.split(END)[0].strip())
    return out


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, cell="LSTM", digits=None,
        n_train=None, epochs=None, units=None):
    """Train, decode held-out problems greedily; see the module docstring.

    ``tiny=True`` is a seconds-long smoke test; ``cell``, ``digits``, ``n_train``,
    ``epochs`` and ``units`` override the form's settings.
    """
    start = time.perf_counter()
    if tiny:
        form = dict(digits=2, n_train=512, epochs=2, units=16, decay=1.0)
    elif quick:
        form = dict(digits=2, n_train=6000, epochs=15, units=96, decay=1.0)
    else:
        form = dict(digits=3, n_train=40000, epochs=20, units=128, decay=0.1)
    digits = digits or form["digits"]
    rng = np.random.default_rng(seed)
    train_pairs = problems(n_train or form["n_train"], digits, rng)
    n_test = min(1000, (10 ** digits) ** 2 - len(train_pairs))
    test_pairs = problems(n_test, digits, rng, exclude=train_pairs)
    q, d_in, d_out, w = encode(train_pairs, digits)
    q_t, d_in_t, d_out_t, w_t = encode(test_pairs, digits)
    epochs = epochs or form["epochs"]
    train, encoder, step = build(cell, units or form["units"], q.shape[1], seed,
                                 steps=epochs * -(-len(q) // 64), decay=form["decay"])
    hist = train.fit([q, d_in], d_out, sample_weight=w, batch_size=64,
                     epochs=epochs, verbose=verbose,
                     validation_data=([q_t, d_in_t], d_out_t, w_t), seed=seed).history
    guesses = greedy_decode(encoder, step, q_t, digits + 2)
    truth = [str(a + b) for a, b in test_pairs]
    exact = float(np.mean([g == t for g, t in zip(guesses, truth)]))
    width = digits + 1
    per_char = float(np.mean([g.rjust(width)[k] == t.rjust(width)[k]
                              for g, t in zip(guesses, truth) for k in range(width)]))
    sums, counts = np.unique([a + b for a, b in train_pairs], return_counts=True)
    mode = str(sums[counts.argmax()])
    baseline = float(np.mean([t == mode for t in truth]))
    plot = _plots.plot_histories({cell: hist}, out_dir, "seq2seq_training.png",
                                 f"adding {digits}-digit numbers\n(teacher forcing)")
    samples = [f"{a}+{b} = {g}" + ("" if g == t else f"   (wrong: {t})")
               for (a, b), g, t in zip(test_pairs[:8], guesses, truth)]
    rows = [{"model": f"{cell}({units or form['units']}) encoder-decoder, greedy",
             "exact match": round(exact, 4), "per character": round(per_char, 4),
             "first loss": round(hist["loss"][0], 4), "last loss": round(hist["loss"][-1], 4)},
            {"model": f"always {mode} (most frequent training sum)",
             "exact match": round(baseline, 4)}]
    return Result(name=NAME, metric=f"held-out exact-match accuracy ({cell})", value=exact,
                  baseline=f"most frequent sum {baseline:.3f}", rows=rows, plots=[plot],
                  samples=samples, seconds=time.perf_counter() - start)
