"""The IEEE 2030.5 / CSIP-AUS endpoint: TLS identity, access scope, routes and the wire format.

Layers, lowest first; a package imports only the ones below it (tests/server/test_layers.py checks):

- `wire/`: the 2030.5 wire format alone: XML in and out (lxml), the one URI table (`hrefs`), the
  encoder (which reads its inputs by shape, `wire/shapes.py`) and decoder. Nothing from the store or
  the rest of the server; the DERControlBase field list it encodes comes from core.der_control_fields.
- `shared/`: device-endpoint infrastructure: the caller's identity and scope, the request unit of work,
  paging, control status, time, metering views, the render cache and the polling fast path, metrics,
  contacts, the server's own identity.
- `subscriptions/`: what a Subscription may name, where its notifications may go, and how its resource
  renders; shared by the two packages above it so that they need not import each other.
- `routes/` (the device-facing HTTP routes), `notify/` (the notifier and delivery), `operator/` (the
  operator JSON API, console and its services): side by side, never importing one another.
- the root modules: the device app factory (`app.py`) and the TLS listener that serves it.

The process that runs these (device app, operator app, engine, notifier) is composed outside server/.
"""
