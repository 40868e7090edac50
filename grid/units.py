"""Unit factors for the network model's boundaries: the model holds W and V, people write kW and kV.

Only the boundaries use these (the network file in `netfile.py`, planner CSVs and reports, the operator
API's deprecated kW aliases, displays); everything between them works in watts.
"""

from __future__ import annotations

W_PER_KW = 1000.0
W_PER_MW = 1e6
V_PER_KV = 1000.0
