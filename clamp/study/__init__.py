"""Studies: what a researcher declares (arms, seeds, schedule, phase rules) and how runs are keyed.

Why this package exists: an experiment is data.  A study file builds a :class:`Study`; this
package loads it (importlib, never exec), validates it before any training, applies ``--set``
overrides, and turns each (arm, seed) into a resolved record and a run key.

What enters: a study file or a :class:`Study`.  What leaves: resolved arm records
(``study.json``) and run keys that decide what a rerun skips.

Modules: :mod:`.design` (the schema: Study, Arm, Dense, StudyError), :mod:`.load` (a study
file -> Study, with its messages), :mod:`.checks` (static and probe checks before training),
:mod:`.keys` (versioned run keys), :mod:`.records` (``study.json``), :mod:`.overrides`
(``--set``), :mod:`.scan` (arms that knock out each head or layer in turn).  The phase rule
and stopping after it are :mod:`clamp.phase`.
"""

from clamp.phase import PhaseRule, StopAfterPhase
from clamp.study.checks import probe_study, validate_study
from clamp.study.design import Arm, Dense, Study, StudyError
from clamp.study.keys import arm_record, run_key
from clamp.study.load import list_studies, load_study
from clamp.study.records import study_record

__all__ = ["Arm", "Dense", "PhaseRule", "StopAfterPhase", "Study", "StudyError", "arm_record", "list_studies",
           "load_study", "probe_study", "run_key", "study_record", "validate_study"]
