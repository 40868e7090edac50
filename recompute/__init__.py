"""Scheduled recomputation: store -> envelope engine -> atomic publication of DERControls."""
