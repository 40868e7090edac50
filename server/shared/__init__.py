"""Device-endpoint infrastructure shared by the routes, the notifier and the operator side.

Identity and scope, paging, the render cache and fast path, control status, time, metrics: nothing here
imports `server.routes`, `server.notify`, `server.subscriptions` or `server.operator`.
"""
