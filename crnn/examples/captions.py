"""Captions: write the English name of a handwritten digit, one character at a time.

Task
    From one 8x8 digit image (scikit-learn's bundled digits, flattened to 64 features)
    generate its name, ``7 -> "seven"``, character by character up to an end mark. A
    quarter of the images (stratified) are held out.
Model
    An image-captioning decoder in miniature: ``image -> Dense(units, tanh)`` is the
    initial state of a ``GRU`` (or ``LSTM``, whose two states get a Dense each) whose input
    at step ``t`` is the embedded character ``t - 1`` (a start mark at ``t = 0``);
    ``TimeDistributed(Dense(V, softmax))`` reads each step's state as the next character's
    distribution. Training uses teacher forcing (the true previous characters, every step
    at once, the steps after the end mark weighted 0); generation is greedy: a second model
    sharing the same layers takes one character and the state, and its most probable
    character is fed back until the end mark.
Reports
    exact-word accuracy of the generated names on the held-out images, against always
    writing the most frequent training word (about 10%); ``captions_training.png`` (the
    training curves) and ``captions_samples.png`` (held-out images with what was written).
Model type
    one-to-many (one vector in, a sequence out), as image captioning.
"""
import time

import numpy as np

import crnn
from crnn.examples import Result
from crnn.examples._plots import plot_histories, pyplot, save
from crnn.examples.digits import load_data

NAME = "captions"
TITLE = "digit image -> its name, char by char, GRU decoder (one-to-many)"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, START, END = "_^$"                          # padding, start and end marks
CHARS = PAD + START + END + "".join(sorted(set("".join(WORDS))))
STEPS = max(map(len, WORDS)) + 1                 # the longest word and its end mark


def encode(labels):
    """Teacher forcing: ``(inputs, targets, weights)``, each ``(N, STEPS)``; inputs are the
    start mark and the word, targets the word and the end mark, weights 0 on padding."""
    x = np.zeros((len(labels), STEPS), dtype="int32")
    y = np.zeros((len(labels), STEPS), dtype="int32")
    for i, label in enumerate(labels):
        ids = [CHARS.index(c) for c in WORDS[label]]
        x[i, :len(ids) + 1] = [CHARS.index(START)] + ids
        y[i, :len(ids) + 1] = ids + [CHARS.index(END)]
    return x, y, (y != CHARS.index(PAD)).astype("float32")


def build(cell, units, seed=0):
    """Three models sharing their layers: ``(model, encoder, step)``.

    ``model`` trains: ``[image (N, 64), chars (N, STEPS)] -> (N, STEPS, V)``; ``encoder``
    gives the decoder's initial states, ``image (N, 64) -> (N, units)`` (a list of two for
    the LSTM); ``step`` generates: ``[char (N, 1), *states] -> [(N, 1, V), *new states]``.
    """
    rnn_cls = {"GRU": crnn.GRU, "LSTM": crnn.LSTM}[cell]
    n_states = 2 if cell == "LSTM" else 1
    embed = crnn.Embedding(len(CHARS), 16, seed=seed, name="char_embedding")
    to_states = [crnn.Dense(units, activation="tanh", seed=seed + i, name=f"image_to_h{i}")
                 for i in range(n_states)]
    rnn = rnn_cls(units, return_sequences=True, return_state=True, seed=seed, name=cell)
    head = crnn.TimeDistributed(crnn.Dense(len(CHARS), activation="softmax", seed=seed),
                                name="next_char")

    image = crnn.Input(shape=(64,), name="image")
    chars = crnn.Input(shape=(STEPS,), dtype="int32", name="chars")
    states = [d(image) for d in to_states]
    outputs = rnn(embed(chars), initial_state=states)
    model = crnn.Model([image, chars], head(outputs[0]), name=f"captions_{cell}")

    encoder = crnn.Model(image, states if n_states > 1 else states[0], name="encoder")
    char = crnn.Input(shape=(1,), dtype="int32", name="char")
    state_in = [crnn.Input(shape=(units,), name=f"state{i}") for i in range(n_states)]
    step_out = rnn(embed(char), initial_state=state_in)
    step = crnn.Model([char, *state_in], [head(step_out[0]), *step_out[1:]], name="step")
    return model, encoder, step


def generate(encoder, step, images):
    """Greedy decoding: the most probable character at each step, fed back as the next
    input, until the end mark (or ``STEPS`` characters). Returns the words."""
    states = encoder.predict(images, batch_size=len(images))
    states = states if isinstance(states, list) else [states]
    char = np.full((len(images), 1), CHARS.index(START), dtype="int32")
    out = np.zeros((len(images), STEPS), dtype="int64")
    for t in range(STEPS):
        probs, *states = step.predict([char, *states], batch_size=len(images))
        out[:, t] = probs[:, 0].argmax(axis=-1)
        char = out[:, t:t + 1].astype("int32")
    words = []
    for ids in out:
        text = "".join(CHARS[i] for i in ids)
        words.append(text.split(END)[0])
    return words


def plot_samples(images, words, truth, out_dir, n=10):
    """``n`` held-out images with the generated word above each: the first ones, and up to
    four mistakes."""
    plt = pyplot()
    wrong = [i for i, (w, y) in enumerate(zip(words, truth)) if w != WORDS[y]][:4]
    pick = [i for i in range(n) if i not in wrong][:n - len(wrong)] + wrong
    images, words, truth = images[pick], [words[i] for i in pick], truth[pick]
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 2.2))
    for ax, img, word, label in zip(axes, images, words, truth):
        ax.imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        right = word == WORDS[label]
        ax.set_title((word or "(empty)") + ("" if right else f"\n(is {WORDS[label]})"),
                     fontsize=10, color="black" if right else "red")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("held-out images and their generated names (red: wrong)", fontsize=10)
    return save(fig, out_dir, "captions_samples.png")


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, epochs=None, units=None,
        n_train=None, cell="GRU"):
    """Train the captioner with teacher forcing, then caption the held-out images greedily.

    ``tiny`` (seconds, for the tests), ``epochs``, ``units``, ``n_train`` (training images
    used) and ``cell`` (``"GRU"`` or ``"LSTM"``) override the quick or full settings.
    """
    start = time.perf_counter()
    if tiny:
        epochs, units, n_train = epochs or 3, units or 16, n_train or 300
    epochs = epochs or (20 if quick else 60)
    units = units or 128
    x_train, y_train, x_test, y_test = load_data(seed)
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    img_train, img_test = x_train.reshape(len(x_train), 64), x_test.reshape(len(x_test), 64)
    c_train, t_train, w_train = encode(y_train)
    c_test, t_test, w_test = encode(y_test)

    model, encoder, step = build(cell, units, seed)
    steps_per_epoch = -(-len(x_train) // 32)
    lr = crnn.optimizers.ExponentialDecay(1e-2, steps_per_epoch * epochs, 0.02)
    model.compile(optimizer=crnn.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if verbose:
        print(f"captions: {cell}({units}) decoder, {epochs} epochs on {len(x_train)} images")
    hist = model.fit([img_train, c_train], t_train, sample_weight=w_train, batch_size=32,
                     epochs=epochs, verbose=verbose, seed=seed,
                     validation_data=([img_test, c_test], t_test, w_test))

    words = generate(encoder, step, img_test)
    correct = np.array([w == WORDS[y] for w, y in zip(words, y_test)])
    common = np.bincount(y_train, minlength=10).argmax()
    baseline = float(np.mean(y_test == common))
    plots = [plot_histories({cell: hist.history}, out_dir, "captions_training.png",
                            f"captions: {cell}({units}) decoder, teacher forcing, "
                            f"per character"),
             plot_samples(img_test, words, y_test, out_dir)]
    wrong = [f"{WORDS[y]} -> {w!r}" for w, y in zip(words, y_test) if w != WORDS[y]]
    samples = [f"generated: {' '.join(words[:10])}",
               f"mistakes ({len(wrong)}): {', '.join(wrong[:8])}" if wrong else "no mistakes"]
    rows = [{"model": f"{cell} decoder", "exact-word accuracy": float(correct.mean()),
             "first loss": hist.history["loss"][0], "last loss": hist.history["loss"][-1],
             "val loss": hist.history["val_loss"][-1], "params": model.count_params()}]
    return Result(name=NAME, metric=f"held-out exact-word accuracy ({cell})",
                  value=float(correct.mean()),
                  baseline=f"most frequent word {WORDS[common]!r} {baseline:.3f}",
                  rows=rows, plots=plots, samples=samples,
                  seconds=time.perf_counter() - start)
