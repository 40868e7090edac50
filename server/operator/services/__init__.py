"""What the operator API, the web console and /metrics read, assembled once (handlers stay thin).

Each module answers one question about the system from the store: which networks there are and how
they run (`networks`), what every constraint looks like over the horizon (`constraints`), what a site
was told and did (`sites`, `compliance`), what curtailment cost (`curtailment`) and which devices are
reachable (`fleet`). They return plain dataclasses; the JSON schemas and the HTML pages render them.
"""
