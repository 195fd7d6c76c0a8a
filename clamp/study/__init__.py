"""Studies: what a researcher declares (arms, seeds, schedule, phase rules) and how runs are keyed.

Why this package exists: an experiment is data.  A study file builds a
:class:`Study`; this package loads it (importlib, never exec), validates it
before any training, applies ``--set`` overrides, and turns each (arm, seed)
into a resolved record and a run key.

What enters: a study file or a :class:`Study`.  What leaves: resolved arm
records (``study.json``) and run keys that decide what a rerun skips.

Modules: :mod:`.design` (Study, Arm, Dense, PhaseRule, load_study),
:mod:`.records` (resolved records, run keys), :mod:`.overrides` (``--set``),
:mod:`.fields` (type-directed field checks).
"""

from clamp.study.design import (
    Arm, Dense, PhaseRule, Study, StudyError, list_studies, load_study, probe_study, validate_study,
)
from clamp.study.records import arm_record, run_hash, study_record
from clamp.phase import StopAfterPhase

__all__ = ["Arm", "Dense", "StopAfterPhase", "PhaseRule", "Study", "StudyError", "list_studies", "load_study", "probe_study", "validate_study",
           "arm_record", "run_hash", "study_record"]
