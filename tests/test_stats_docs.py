"""The runnable examples in clamp.analysis.stats docstrings run and give what they say."""

import doctest
import importlib

import pytest

MODULES = ["clamp.analysis.stats", "clamp.analysis.stats.phase", "clamp.analysis.stats.survival", "clamp.analysis.stats.compare", "clamp.analysis.stats.factorial",
           "clamp.analysis.stats.runs", "clamp.analysis.stats.sentences", "clamp.analysis.stats.plots", "clamp.analysis.stats.pipeline",
           "clamp.phase", "clamp.analysis.stats.caveats"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
