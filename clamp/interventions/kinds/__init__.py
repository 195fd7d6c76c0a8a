"""The built-in intervention kinds, one concept per module; every module here is imported (registered) on import.

Why this package exists: a kind is ONE class -- fields, validation
(:meth:`~clamp.interventions.spec.Intervention.check`) and effect
(:meth:`~clamp.interventions.spec.Intervention.compile`) -- so adding a built-in
kind means adding one module to this folder: it is found here, registered by its
``kind`` string (:mod:`clamp.interventions.registry`) and exported by :mod:`clamp.interventions` and :mod:`clamp`
without editing any other file.  Kind modules import torch only inside their
methods, so declaring interventions stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
