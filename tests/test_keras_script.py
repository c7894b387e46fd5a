"""A Keras 3 text-classification script with ``keras.`` replaced by ``crnn.`` runs as
written (issue 17): the README's "Coming from Keras" block, run here."""
import csv

import numpy as np

from test_readme import block_after


def test_the_keras_script_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)       # it writes best.crnn, log.csv and model.crnn
    namespace = {}
    exec(compile(block_after("<!-- readme-example: keras-script -->"), "README.md",
                 "exec"), namespace)
    out = capsys.readouterr().out
    assert "(Bidirectional)" in out and "Total params" in out
    history = namespace["history"].history
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy",
                            "learning_rate"}
    epochs = len(history["loss"])
    assert 1 <= epochs <= 4 and history["loss"][-1] < history["loss"][0]
    with open("log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == epochs and "val_loss" in rows[0]
    assert (tmp_path / "best.crnn").exists() and (tmp_path / "model.crnn").exists()
    model, restored, x_val = namespace["model"], namespace["restored"], namespace["x_val"]
    np.testing.assert_array_equal(namespace["probs"], model.predict(x_val, verbose=0))
    assert namespace["probs"].shape == (80, 1) and restored.get_layer("out").units == 1
    assert namespace["again"].count_params() == model.count_params()
    assert np.isfinite(namespace["loss"]) and 0 <= namespace["accuracy"] <= 1
