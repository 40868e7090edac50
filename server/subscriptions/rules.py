"""What a Subscription must satisfy before it is stored; each rule answers with a reason for the 400."""

from __future__ import annotations

from urllib.parse import urlsplit

from gridshare.core.settings import Settings
from gridshare.server.wire.decode import SubscriptionIn

#: Column sizes in store.models.Subscription.
MAX_URI_CHARS = 1024
MAX_HREF_CHARS = 255


def problem(body: SubscriptionIn, settings: Settings) -> str | None:
    """Why this subscription cannot be accepted, or None. Resource visibility is checked separately."""
    if body.conditional:
        return "conditional subscriptions are not supported (resources are subscribable=1)"
    if body.encoding != 0:
        return "only encoding 0 (application/sep+xml) is supported"
    if not body.subscribed_resource.startswith("/") or len(body.subscribed_resource) > MAX_HREF_CHARS:
        return f"subscribedResource must be one of our hrefs (a path of at most {MAX_HREF_CHARS} characters)"
    return notification_uri_problem(body.notification_uri, settings)


def notification_uri_problem(uri: str, settings: Settings) -> str | None:
    """An absolute http(s) URL with a host and no credentials (where it leads is `egress`'s question)."""
    if len(uri) > MAX_URI_CHARS:
        return f"notificationURI is longer than {MAX_URI_CHARS} characters"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return "notificationURI is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "notificationURI must be an absolute http or https URL"
    if parts.username is not None or parts.password is not None:
        return "notificationURI must not carry credentials"
    if any(c.isspace() for c in uri):
        return "notificationURI must not contain white space"
    if port == 0:
        return "notificationURI has no usable port"
    return None
