"""The ``crnn`` command: argument parsing, help, and one clear line on stderr (with a
non-zero exit code) for every failure the user can act on. The examples themselves are
replaced by fakes here (tests/test_examples.py runs the real ones)."""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from crnn import cli
from crnn.examples import ExampleError, Result


def run(argv, capsys):
    """``(exit code, stdout, stderr lines)`` of ``crnn argv``."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


@pytest.fixture
def fake_example(monkeypatch):
    """Install ``crnn.examples.<name>`` as a fake whose ``run`` is ``fn`` (records calls)."""
    calls = []

    def install(name, fn=None):
        def run(out_dir, quick=True, seed=0, verbose=1, **options):
            calls.append(dict(name=name, out_dir=out_dir, quick=quick, seed=seed,
                              verbose=verbose, **options))
            if fn is not None:
                return fn(out_dir)
            path = os.path.join(out_dir, f"{name}_plot.png")
            Path(path).write_bytes(b"png")
            return Result(name=name, metric="held-out accuracy", value=0.98765,
                          baseline="majority 0.1", rows=[{"model": "LSTM", "acc": 0.98765}],
                          plots=[path], samples=["a sample"], seconds=1.5)
        module = types.ModuleType(f"crnn.examples.{name}")
        module.NAME, module.TITLE, module.run = name, f"fake {name}", run
        monkeypatch.setitem(sys.modules, f"crnn.examples.{name}", module)

    install.calls = calls
    return install


# -- parsing and help ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["--help"], ["demo", "bench"]),
    (["demo", "--help"], ["--full", "--out", "--seed", "--quiet", "--imdb", "digits"]),
])
def test_help(argv, expected, capsys):
    code, out, err = run(argv, capsys)
    assert code == 0 and err == []
    assert all(word in out for word in expected)


def test_no_command_prints_help_and_fails(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and any("demo" in line for line in err)


def test_demo_options_reach_the_examples(fake_example, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fake_example("digits")
    fake_example("captions")
    code, out, err = run(["demo", "digits", "--quiet", "captions", "--full", "--seed", "3",
                          "--out", str(tmp_path / "plots")], capsys)
    assert code == 0 and err == []
    assert [c["name"] for c in fake_example.calls] == ["digits", "captions"]
    assert all(c["quick"] is False and c["seed"] == 3 and c["verbose"] == 0
               and c["out_dir"] == str(tmp_path / "plots") for c in fake_example.calls)
    assert "sentiment" not in out


def test_results_table_and_plots(fake_example, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fake_example("digits")
    code, out, err = run(["demo", "digits", "--out", str(tmp_path)], capsys)
    assert code == 0 and err == []
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("example"))
    assert header.split() == ["example", "metric", "value", "baseline", "seconds"]
    row = lines[lines.index(header) + 2]
    assert row.split()[0] == "digits" and "0.9877" in row and "majority 0.1" in row
    assert row.split()[-1] == "1.5"
    assert str(tmp_path / "digits_plot.png") in out
    assert "a sample" in out                    # not quiet: the example's detail


def test_imdb_is_passed_as_data(fake_example, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fake_example("sentiment")
    data = tmp_path / "imdb.npz"
    data.write_bytes(b"")
    code, _, err = run(["demo", "sentiment", "-q", "--imdb", str(data), "--out",
                        str(tmp_path)], capsys)
    assert code == 0 and err == []
    assert fake_example.calls[0]["data"] == str(data)


def test_all_skips_sentiment_without_data(fake_example, monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(cli, "EXAMPLES", ("digits", "sentiment"))
    fake_example("digits")
    fake_example("sentiment")
    code, out, err = run(["demo", "-q", "--out", str(tmp_path)], capsys)
    assert code == 0 and err == []
    assert [c["name"] for c in fake_example.calls] == ["digits"]
    assert "note: sentiment: skipped, needs --imdb PATH" in out


# -- failures: one line on stderr, non-zero exit -------------------------------------------
def test_unknown_example(capsys):
    code, out, err = run(["demo", "digits", "nope"], capsys)
    assert code != 0 and len(err) == 1
    assert "unknown example 'nope'" in err[0] and "digits" in err[0]


def test_unknown_option(capsys):
    code, _, err = run(["demo", "--bogus"], capsys)
    assert code == 2 and len(err) == 1 and "--bogus" in err[0]


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run(["demo", "digits", "--out", str(blocker / "plots")], capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith("crnn demo: cannot write the plots to")


def test_missing_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    code, _, err = run(["demo", "digits", "--out", str(tmp_path)], capsys)
    assert code == 1 and len(err) == 1
    assert "matplotlib" in err[0] and "pip install" in err[0]


def test_sentiment_named_without_data(capsys):
    code, _, err = run(["demo", "sentiment"], capsys)
    assert code == 1 and len(err) == 1 and "--imdb PATH" in err[0]


def test_imdb_path_missing(tmp_path, capsys):
    code, _, err = run(["demo", "sentiment", "--imdb", str(tmp_path / "none.npz")], capsys)
    assert code == 1 and len(err) == 1 and "no such file" in err[0]


def test_data_file_that_is_not_what_it_claims(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fake = tmp_path / "imdb.npz"
    fake.write_text("not an archive")
    code, _, err = run(["demo", "sentiment", "-q", "--imdb", str(fake), "--out",
                        str(tmp_path)], capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith("crnn demo sentiment:") and str(fake) in err[0]


def test_missing_example_module(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setitem(sys.modules, "crnn.examples.captions", None)   # import fails
    code, _, err = run(["demo", "captions", "-q", "--out", str(tmp_path)], capsys)
    assert code == 1 and len(err) == 1 and "captions.py is missing" in err[0]


@pytest.mark.parametrize("error, expected", [
    (ExampleError("expected imdb.npz at x, found a text file"), "found a text file"),
    (OSError(28, "No space left on device"), "No space left on device"),
    (ValueError("a bug\non two lines"), "a bug on two lines (run again with --traceback"),
    (ModuleNotFoundError("No module named 'sklearn'", name="sklearn.datasets"),
     'needs the sklearn package: pip install "crnn[examples]"'),
])
def test_example_failure_is_one_line(error, expected, fake_example, tmp_path, capsys):
    pytest.importorskip("matplotlib")

    def fail(out_dir):
        raise error

    fake_example("digits", fail)
    fake_example("captions")
    code, out, err = run(["demo", "digits", "captions", "-q", "--out", str(tmp_path)],
                         capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith("crnn demo digits:") and expected in err[0]
    assert [c["name"] for c in fake_example.calls] == ["digits", "captions"]   # went on
    assert "note: digits: failed" in out


def test_traceback_option_reraises(fake_example, tmp_path):
    pytest.importorskip("matplotlib")

    def fail(out_dir):
        raise ValueError("a bug")

    fake_example("digits", fail)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["demo", "digits", "--traceback", "-q", "--out", str(tmp_path)])


# -- bench ---------------------------------------------------------------------------------
def test_bench_missing_script(monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCH_SCRIPT", Path("benchmarks") / "no_such_bench.py")
    code, _, err = run(["bench", "--quick"], capsys)
    assert code == 1 and len(err) == 1 and "no_such_bench.py not found" in err[0]


def test_bench_passes_arguments_through(monkeypatch, capsys):
    script = cli.find_bench_script()
    if script is None:
        pytest.skip("no benchmarks/ beside this crnn (an installed wheel)")
    seen = {}

    def call(cmd, env):
        seen.update(cmd=cmd, env=env)
        return 3

    monkeypatch.setattr(cli.subprocess, "call", call)
    code, _, _ = run(["bench", "--quick", "--cells", "lstm", "--no-torch"], capsys)
    assert code == 3                              # the script's own exit code
    assert seen["cmd"] == [sys.executable, str(script), "--quick", "--cells", "lstm",
                           "--no-torch"]
    root = str(Path(cli.__file__).resolve().parent.parent)
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == root


def test_python_dash_m(tmp_path):
    root = Path(cli.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "crnn", "demo", "nope"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown example 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_closed_pipe_ends_quietly(monkeypatch):
    # crnn demo --list | head: the reader goes away while we print
    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr("builtins.print", closed)
    assert cli.main(["demo", "--list"]) == 141


def test_bench_fit_runs_the_fit_benchmark(monkeypatch, capsys):
    seen = {}

    def call(cmd, env):
        seen.update(cmd=cmd)
        return 0

    monkeypatch.setattr(cli.subprocess, "call", call)
    code, _, _ = run(["bench", "--quick", "--fit", "--models", "gru-stack"], capsys)
    assert code == 0
    assert Path(seen["cmd"][1]).name == "bench_fit.py"
    assert seen["cmd"][2:] == ["--quick", "--models", "gru-stack"]   # --fit is the CLI's
