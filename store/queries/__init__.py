"""Scoped queries, one module per resource family; every public function takes a ClientScope or an id."""
