"""Benchmarks: throughput and memory, measured side by side in one process, printed as figures.

Why this package exists: speed targets are checked by benchmarks, never by timed assertions in
tests.  :mod:`.throughput` is ``clamp bench`` (``python -m clamp.bench``); :mod:`.flagship` builds
the arms it times; :mod:`.plain` is the plain PyTorch loop it is compared with; :mod:`.foreign`
times a Hugging Face model; :mod:`.study` times a whole study.
"""

from clamp.bench.throughput import main

__all__ = ["main"]
