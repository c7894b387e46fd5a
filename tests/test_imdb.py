"""The IMDB loaders of the sentiment example, on small files in both formats written
here: Keras's imdb.npz (object arrays of lists of word ranks) and the aclImdb/ folder."""
import os

import numpy as np
import pytest

from crnn.examples import ExampleError
from crnn.examples.sentiment import (load, load_aclimdb, load_imdb_npz, pad_sequences,
                                     tokenize)


def write_npz(path, x_train, y_train, x_test, y_test):
    def obj(seqs):
        out = np.empty(len(seqs), dtype=object)
        out[:] = [list(s) for s in seqs]
        return out
    np.savez(path, x_train=obj(x_train), y_train=np.array(y_train),
             x_test=obj(x_test), y_test=np.array(y_test))
    return str(path)


def write_aclimdb(root, reviews):
    """``reviews[part][label]`` lists of texts, written as aclImdb/part/label/i_7.txt."""
    for part, by_label in reviews.items():
        for label, texts in by_label.items():
            folder = root / "aclImdb" / part / label
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                (folder / f"{i}_7.txt").write_text(text, encoding="utf-8")
    return root / "aclImdb"


# -- pad_sequences: Keras's semantics ------------------------------------------------------
def test_pad_sequences_pre_by_default():
    out = pad_sequences([[1, 2, 3], [4], []], maxlen=2)
    np.testing.assert_array_equal(out, [[2, 3], [0, 4], [0, 0]])
    assert out.dtype == np.int32


def test_pad_sequences_post_and_longest():
    seqs = [[1, 2, 3], [4]]
    np.testing.assert_array_equal(pad_sequences(seqs), [[1, 2, 3], [0, 0, 4]])
    np.testing.assert_array_equal(pad_sequences(seqs, padding="post"), [[1, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2, truncating="post",
                                                padding="post", value=9), [[1, 2], [4, 9]])
    with pytest.raises(ValueError, match="padding"):
        pad_sequences(seqs, padding="middle")


# -- imdb.npz ------------------------------------------------------------------------------
def test_load_imdb_npz_as_keras(tmp_path):
    path = write_npz(tmp_path / "imdb.npz", [[1, 5, 2], [7, 7, 7, 7, 3]], [1, 0],
                     [[4, 9]], [0])
    (x, y), (x_t, y_t) = load_imdb_npz(path, num_words=9, maxlen=4)
    # start_char 1, ranks shifted by 3, ids >= num_words become 2, 'pre' padding/truncation
    np.testing.assert_array_equal(x, [[1, 4, 8, 5], [2, 2, 2, 6]])
    np.testing.assert_array_equal(y, [1, 0])
    np.testing.assert_array_equal(x_t, [[0, 1, 7, 2]])
    assert y_t.dtype == np.float32 and x.dtype == np.int32


def test_load_imdb_npz_without_cap(tmp_path):
    path = write_npz(tmp_path / "imdb.npz", [[100]], [1], [[1, 2]], [0])
    (x, _), (x_t, _) = load_imdb_npz(path, num_words=None, maxlen=None, start_char=None,
                                      index_from=0)
    np.testing.assert_array_equal(x, [[100]])
    np.testing.assert_array_equal(x_t, [[1, 2]])


def test_load_imdb_npz_errors(tmp_path):
    with pytest.raises(ExampleError, match="no such file"):
        load_imdb_npz(tmp_path / "nope.npz")
    text = tmp_path / "imdb.npz"
    text.write_text("not an archive")
    with pytest.raises(ExampleError, match="not one"):
        load_imdb_npz(text)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((2, 3)))
    with pytest.raises(ExampleError, match="expected arrays x_train, y_train.*found x_train"):
        load_imdb_npz(partial)
    bad = write_npz(tmp_path / "bad.npz", [[1], [2]], [1, 5], [[1]], [0])
    with pytest.raises(ExampleError, match="0/1 labels"):
        load_imdb_npz(bad)
    short = write_npz(tmp_path / "short.npz", [[1], [2]], [1], [[1]], [0])
    with pytest.raises(ExampleError, match="as many reviews as labels"):
        load_imdb_npz(short)


# -- aclImdb/ ------------------------------------------------------------------------------
REVIEWS = {"train": {"pos": ["A great film, great fun.", "Great<br />acting"],
                     "neg": ["A dull film.", "Dull, dull and bad"]},
           "test": {"pos": ["great unseen-word"], "neg": ["bad film"]}}


def test_tokenize():
    assert tokenize("It's GREAT<br />fun, 10/10!") == ["it's", "great", "fun", "10", "10"]


def test_load_aclimdb_vocabulary_from_train(tmp_path):
    root = write_aclimdb(tmp_path, REVIEWS)
    (x, y), (x_t, y_t), index = load_aclimdb(root, num_words=6, maxlen=5,
                                              return_word_index=True)
    # counts in train: great 3, dull 3, a 2, film 2, ...: ties alphabetical, ids from 2,
    # capped below num_words = 6
    assert index == {"dull": 2, "great": 3, "a": 4, "film": 5}
    # negatives first, then positives, each in file-name order
    np.testing.assert_array_equal(y, [0, 0, 1, 1])
    np.testing.assert_array_equal(x[0], [0, 0, 4, 2, 5])          # "a dull film"
    np.testing.assert_array_equal(x[1], [0, 2, 2, 1, 1])          # "dull dull and bad"
    np.testing.assert_array_equal(x[2], [4, 3, 5, 3, 1])          # "a great film great fun"
    np.testing.assert_array_equal(x_t, [[0, 0, 0, 1, 5], [0, 0, 3, 1, 1]])
    np.testing.assert_array_equal(y_t, [0, 1])
    assert x.max() < 6


def test_load_finds_either_format(tmp_path):
    root = write_aclimdb(tmp_path / "acl", REVIEWS)
    (x, _), _ = load(str(root.parent), num_words=100, maxlen=3)   # the folder above works
    assert x.shape == (4, 3)
    npz = write_npz(tmp_path / "imdb.npz", [[1, 2]], [1], [[3]], [0])
    (x, _), _ = load(npz, num_words=100, maxlen=3)
    np.testing.assert_array_equal(x, [[1, 4, 5]])


def test_load_errors_are_one_clear_line(tmp_path):
    with pytest.raises(ExampleError, match="pass data=PATH"):
        load(None, 100, 10)
    with pytest.raises(ExampleError, match="found nothing there"):
        load(str(tmp_path / "missing"), 100, 10)
    (tmp_path / "empty" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(ExampleError, match="found no train/neg/") as info:
        load(str(tmp_path / "empty"), 100, 10)
    assert "\n" not in str(info.value)
