"""A virtual fleet that speaks CSIP-AUS to GridShare: real 2030.5 clients, devices that behave like inverters.

Planners and integrators use it to see what a fleet actually does under GridShare's envelopes (who is
curtailed, by how much, whether any constraint breaks, also when communications fail). Entry points:
`gridshare sim run SCENARIO.yaml` and `gridshare sim compare SCENARIO.yaml` (see docs/simulator.md).
"""
