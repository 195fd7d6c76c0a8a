"""Every runnable example in clamp's docstrings runs and gives what it says (every module, so none goes stale)."""

from __future__ import annotations

import doctest
import importlib

import pytest
from helpers import ROOT

MODULES = sorted(".".join(p.with_suffix("").relative_to(ROOT).parts).removesuffix(".__init__")
                 for p in (ROOT / "clamp").rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
