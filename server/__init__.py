"""The IEEE 2030.5 / CSIP-AUS endpoint: TLS identity, access scope, routes and the wire format."""
