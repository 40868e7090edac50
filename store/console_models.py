"""Tables of the operator console: what devices did and what they were told, kept for review.

* `device_contact`: when each EndDevice last reached the server and how often it polls (written by
  every serving process from memory every few seconds, never per request).
* `limit_history`: the limits that were in force per site, written by each publication for the set it
  replaces, so compliance and curtailment can be judged after the envelope sets themselves are pruned.
* `constraint_report`: what the engine computed per constraint with each publication (loading
  forecast, rating, headroom, binding), deleted with the set's envelopes.
* `console_session`: browser logins, each bound to the bearer token it was exchanged for.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gridshare.store.models import Base


class DeviceContact(Base):
    __tablename__ = "device_contact"
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), primary_key=True)
    first_s: Mapped[int] = mapped_column(BigInteger)
    last_s: Mapped[int] = mapped_column(BigInteger)
    last_resource: Mapped[str] = mapped_column(String(64), default="")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    derc_polls: Mapped[int] = mapped_column(BigInteger, default=0)
    last_derc_s: Mapped[int | None] = mapped_column(BigInteger)
    #: smoothed time between two DERControlList polls, as the serving process that saw them measured it
    poll_interval_s: Mapped[float | None] = mapped_column(Float)


class LimitHistory(Base):
    """One stretch of one site's limits as devices had them in force: [start_s, end_s)."""

    __tablename__ = "limit_history"
    __table_args__ = (
        Index("ix_limit_history_site_start", "site_id", "start_s"),
        Index("ix_limit_history_start", "start_s"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    export_limit_w: Mapped[float] = mapped_column(Float)
    import_limit_w: Mapped[float] = mapped_column(Float)
    set_id: Mapped[int] = mapped_column(Integer)
    published_s: Mapped[int] = mapped_column(BigInteger)  # when devices could first know these limits
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)


class ConstraintReportRecord(Base):
    __tablename__ = "constraint_report"
    set_id: Mapped[int] = mapped_column(ForeignKey("envelope_set.id", ondelete="CASCADE"), primary_key=True)
    report: Mapped[bytes] = mapped_column(LargeBinary)


class ConsoleSession(Base):
    """A browser login: the cookie holds a random id, the store only its SHA-256 and the CSRF secret."""

    __tablename__ = "console_session"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_s: Mapped[int] = mapped_column(BigInteger)
    expires_s: Mapped[int] = mapped_column(BigInteger)
    ended_s: Mapped[int | None] = mapped_column(BigInteger)
