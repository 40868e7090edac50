"""The 2030.5 wire format, in one place: namespaces, XML parsing/validation, and store <-> XML mapping."""
