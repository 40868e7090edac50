"""The operator side's services: what the API, the web console and /metrics read, and what they write.

Read models answer one question each from the store: which networks there are and how they run
(`networks`), what every constraint looks like over the horizon (`constraints`), what a site was told
and did (`sites`, `compliance`), what curtailment cost (`curtailment`), which devices are reachable
(`fleet`), the console's overview (`overview`). They return plain dataclasses; the JSON schemas and the
HTML pages render them.

Writers change one resource family each, so route handlers hold no ORM writes: FSAs and programs
(`programs`), sites and their agreements (`site_registry`), site decommissioning (`decommission`),
derates (`derates`). Smaller families write through their store query module directly
(store/queries/aggregators.py, nmis.py, controls.py, subscriptions.py, runtime_settings.py).
"""
