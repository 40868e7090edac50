"""The access scope: who is asking, derived once from the TLS identity and passed into every query.

Every query that touches client-visible data takes a `ClientScope` and filters through
`site_filter()`, so a new route cannot forget access control (design notes §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam

from gridshare.store.change_feed import owner_key
from gridshare.store.models import ClientKind, Site


@dataclass(frozen=True)
class ClientScope:
    kind: ClientKind
    lfdi: str
    sfdi: int
    aggregator_id: int | None = None

    @property
    def is_aggregator(self) -> bool:
        return self.kind is ClientKind.aggregator

    def site_filter(self) -> ColumnElement[bool]:
        """Rows of `site` this client may see: its own EndDevice, or its aggregator's EndDevices."""
        if self.is_aggregator:
            return Site.aggregator_id == self.aggregator_id
        return and_(Site.lfdi == self.lfdi, Site.aggregator_id.is_(None))

    def site_params(self) -> dict[str, Any]:
        """The parameters of `BOUND_SITE_FILTERS[self.is_aggregator]`: `site_filter` for statements
        built once (building a statement costs several times running it: store/queries/sites.py)."""
        if self.is_aggregator:
            return {"scope_aggregator_id": self.aggregator_id}
        return {"scope_lfdi": self.lfdi}

    def change_key(self) -> str:
        """The change key of what this client sees (`owner_key` of the sites `site_filter` selects):
        every body it is served depends on it, and a device's registration or NMI binding bumps it."""
        return owner_key(self.lfdi, self.aggregator_id if self.is_aggregator else None)


#: `ClientScope.site_filter` with bound parameters, by `is_aggregator`; `site_params` fills them.
BOUND_SITE_FILTERS: dict[bool, ColumnElement[bool]] = {
    False: and_(Site.lfdi == bindparam("scope_lfdi"), Site.aggregator_id.is_(None)),
    True: Site.aggregator_id == bindparam("scope_aggregator_id"),
}
