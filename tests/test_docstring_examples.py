"""Every layer's docstring has an ``Examples`` section, and it runs as written
(doctest), with ``np``, ``crnn`` and the layers of ``crnn.layers`` in scope."""
import doctest
import inspect

import numpy as np
import pytest

import crnn

LAYERS = sorted(n for n in crnn.layers.__all__ if inspect.isclass(getattr(crnn.layers, n)))


@pytest.mark.parametrize("name", LAYERS)
def test_the_layers_examples_run(name):
    cls = getattr(crnn.layers, name)
    assert "Examples\n" in (cls.__doc__ or ""), f"{name} has no Examples section"
    scope = {"np": np, "crnn": crnn, **{n: getattr(crnn.layers, n) for n in LAYERS}}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder(recurse=False).find(cls, name, globs=scope)
    assert tests and sum(len(t.examples) for t in tests) > 0, name
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_public_functions_and_calls_have_docstrings():
    missing = [f"crnn.ops.{n}" for n in crnn.ops.__all__
               if inspect.isfunction(getattr(crnn.ops, n))
               and not (getattr(crnn.ops, n).__doc__ or "").strip()]
    for name in LAYERS:
        call = getattr(crnn.layers, name).__dict__.get("call")
        if call is not None and not (call.__doc__ or "").strip():
            missing.append(f"crnn.layers.{name}.call")
    assert not missing, f"no docstring: {missing}"
