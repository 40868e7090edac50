"""The network model shared by the engine, fallback, recomputation, simulator and planners.

Nodes, branches and their ratings, sites and their connection agreements, the network file format
(kW in files, W inside: converted once at the file boundary), presets and linear sensitivities.
Pure Python and numpy; nothing here knows about HTTP, SQL or the engine that uses it.
"""
