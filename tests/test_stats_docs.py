"""The runnable examples in clamp.stats docstrings run and give what they say."""

import doctest
import importlib

import pytest

MODULES = ["clamp.stats", "clamp.stats.phase", "clamp.stats.survival", "clamp.stats.compare", "clamp.stats.factorial",
           "clamp.stats.study", "clamp.stats.report", "clamp.stats.plots", "clamp.stats.analysis"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
