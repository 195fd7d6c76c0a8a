"""The runnable examples in the report's docstrings run and give what they say."""

import doctest
import importlib

import pytest

MODULES = ["clamp.analysis.report", "clamp.analysis.html", "clamp.analysis.results", "clamp.analysis.figures",
           "clamp.execution.progress"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    import matplotlib

    matplotlib.use("Agg")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
