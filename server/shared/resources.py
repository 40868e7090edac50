"""Which IEEE 2030.5 resource a request path names, for metrics: `/edev/7/derp/1/derc` -> DERControlList.

Ids (numbers, mRIDs) become `*` and the shape is looked up in one table; answers are memoised per raw
path (devices poll the same few paths), so classifying a request costs one dict lookup.
"""

from __future__ import annotations

import re

from gridshare.server.wire import hrefs

_ID = re.compile(r"^(\d+|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{40})$")

#: Resource name by path shape: the 2030.5 URI table's (server/wire/hrefs.py).
SHAPES: dict[str, str] = hrefs.SHAPES
OTHER = "other"
RESOURCES: tuple[str, ...] = (*dict.fromkeys(SHAPES.values()), OTHER)
_EDEV = re.compile(r"^/edev/(\d+)(?:/|$)")
_MEMO_MAX = 50_000


def shape_of(path: str) -> str:
    parts = path.rstrip("/").split("/") if path != "/" else [""]
    return "/".join("*" if _ID.match(p) else p for p in parts)


class Classifier:
    """Path -> (resource name, EndDevice id in the path or None), memoised."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[str, int | None]] = {}

    def __call__(self, path: str) -> tuple[str, int | None]:
        found = self._memo.get(path)
        if found is not None:
            return found
        resource = SHAPES.get(shape_of(path), OTHER)
        match = _EDEV.match(path)
        site_id = int(match[1]) if match and resource != OTHER else None
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()  # junk paths must not grow memory without bound
        self._memo[path] = found = (resource, site_id or None)
        return found
