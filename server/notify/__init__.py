"""Subscriptions' other half: noticing what changed for a subscriber, and delivering Notifications."""
