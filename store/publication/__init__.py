"""What the envelope engine keeps in the store: lease, status, network documents, defaults, publications."""
