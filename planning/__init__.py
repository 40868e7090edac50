"""Planner studies: a year of curtailment per site and per allocation rule, sizing, and the report.

`Study.load(...)` reads a network (a network file, SimBench, pandapower), candidate sites and
profiles; `Study.run(...)` runs the live engine's envelopes over every interval of the year for
each rule and envelope behaviour and returns pandas DataFrames (`StudyResult`). See
docs/planning.md. The optional extra `gridshare[planning]` brings pandapower, simbench and pyarrow.
"""

from gridshare.planning.errors import PlanningError
from gridshare.planning.study import Study, StudyResult

__all__ = ["PlanningError", "Study", "StudyResult"]
