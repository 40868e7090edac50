"""The operator API: JSON over HTTP on its own listener, bearer tokens, every write audited.

It never shares a port or an application with the 2030.5 endpoint, so nothing here is reachable with
a device certificate; it changes what devices see only through the store (and its publication counter).
"""
