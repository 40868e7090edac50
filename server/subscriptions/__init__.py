"""What a 2030.5 Subscription may name, which notification URIs it may use, and how its resource renders.

Shared by the subscription routes (server/routes/subscriptions.py) and the notifier (server/notify/), so
that neither imports the other.
"""
