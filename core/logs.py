"""Log output: readable text lines by default, or one JSON object per line for log shippers.

Both carry the same events: the JSON form has the time (ISO 8601 UTC and epoch seconds), level,
logger, the formatted message, the exception and stack text when there is one, and any `extra`
fields a caller attached. `use_format` switches every handler of the root logger, so it can be
called once the settings are known (the CLI configures text before it reads them).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: LogRecord attributes that are not a caller's `extra` fields
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        return json.dumps(out, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {kind!r} (text or json)")


def use_format(kind: str) -> None:
    """Give every root handler the chosen formatter (one is added if logging was never configured)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    chosen = formatter(kind)
    for handler in root.handlers:
        handler.setFormatter(chosen)
    logging.captureWarnings(True)  # Python warnings become log events too, in the same format
