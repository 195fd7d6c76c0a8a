"""Helpers shared by the tests: the repository root, hand-built results folders, user code found by import path.

The tests' folder is on ``sys.path`` (pytest puts the root ``conftest.py``'s folder there), so test modules
import these as ``helpers`` and a spawned worker finds ``helpers.user_code:...`` by import path.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
