"""Server-side TLS that tells a refused client why: the fatal alert reaches the peer before the close.

asyncio's `SSLProtocol` (CPython 3.11-3.14) and uvloop's Cython copy of it handle a failed handshake by
force-closing the socket without first sending what OpenSSL left in the outgoing memory BIO
(CPython gh-98078). That data is the fatal alert (`unknown_ca`, `certificate_expired`,
`bad_certificate`, `certificate_required`), so a device presenting a certificate from the wrong PKI
saw only "unexpected EOF" and could not be told apart from a network fault. A blocking `ssl.SSLSocket`
on the same context does send the alert.

`AlertingSSLProtocol` is the stdlib protocol with that one path changed: on a TLS error it writes the
pending alert, half-closes, keeps reading (and discarding) for a moment so that the close is a FIN and
not a RST that could overtake the alert, then closes. It also logs who was refused and why, and
enforces the handshake timeout from the settings (the event loop's own default is 60 s).

uvloop's protocol cannot be subclassed (its methods are C-level), so the device port runs this
pure-Python protocol over uvloop's TCP transport; bench/bench_conn_layer.py measures what that costs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from typing import Any

log = logging.getLogger("gridshare.server.connections")

#: How long a refused connection stays half-closed, draining what the peer still sends, so the
#: kernel closes with a FIN after the alert rather than a RST that may discard it unread.
ALERT_LINGER_S = 2.0
_WRAPPED = sslproto.SSLProtocolState.WRAPPED


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unknown peer")


def describe_tls_error(exc: BaseException) -> str:
    """A one-line reason an installer can act on (the verify message names the certificate problem)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    return str(exc) or type(exc).__name__


class AlertingSSLProtocol(sslproto.SSLProtocol):
    """asyncio's server-side TLS protocol, but a fatal TLS error sends its alert before closing."""

    _discarding = False
    _linger_handle: asyncio.TimerHandle | None = None
    _handshake_failed = False
    _flush_scheduled = False
    _reading = False  # inside buffer_updated's call into the application: it flushes what is written

    def _on_handshake_complete(self, handshake_exc: Any) -> None:
        # Failure arrives here as an ssl.SSLError (or the ConnectionResetError class on EOF);
        # the base class then calls _fatal_error, which is where the alert used to be dropped.
        self._handshake_failed = handshake_exc is not None
        super()._on_handshake_complete(handshake_exc)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        transport: Any = self._transport
        if transport is None or not isinstance(exc, ssl.SSLError) or transport.is_closing():
            super()._fatal_error(exc, message)
            return
        if self._handshake_failed:
            log.info("TLS handshake from %s refused: %s", _peer(transport), describe_tls_error(exc))
        else:
            log.info("TLS error on the connection from %s: %s", _peer(transport), describe_tls_error(exc))
        self._send_alert_and_close(transport)

    def _send_alert_and_close(self, transport: asyncio.Transport) -> None:
        """Write the alert OpenSSL produced, half-close, drain briefly, then close (gh-98078)."""
        base: Any = self  # the stdlib's private state, which typeshed does not describe
        base._set_state(sslproto.SSLProtocolState.UNWRAPPED)
        if base._app_transport is not None:
            base._app_transport._closed = True
        alert = base._outgoing.read()
        if alert:
            transport.write(alert)
        self._discarding = True
        if transport.can_write_eof():
            transport.write_eof()
            # by then the alert has long been sent, or the peer is not reading: drop the socket
            self._linger_handle = self._loop.call_later(ALERT_LINGER_S, transport.abort)
        else:
            transport.close()

    def eof_received(self) -> None:
        if self._discarding:
            return None  # the peer has read our alert and closed: the transport closes our side
        return super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        super().connection_lost(exc)

    # --- the data path ---------------------------------------------------------------------------
    # The stdlib's algorithm, with its per-request costs taken out: it raised SSLWantReadError to end
    # every read, encrypted a response's head and body as two records sent by two send() calls, and
    # went through about 25 small method calls per request. Anything out of the ordinary (another
    # state, paused flow, a TLS error) takes the stdlib's own path.

    def buffer_updated(self, nbytes: int) -> None:
        base: Any = self
        if self._discarding:
            return  # a refused peer's bytes: read so the close stays a FIN, never processed
        if base._state is not _WRAPPED or base._app_reading_paused:
            super().buffer_updated(nbytes)
            return
        incoming, sslobj = base._incoming, base._sslobj
        incoming.write(base._ssl_buffer_view[:nbytes])
        try:
            chunks: list[bytes] = []
            chunk = b"1"
            try:
                # stop when nothing is left to decrypt instead of on SSLWantReadError (as uvloop does)
                while incoming.pending or sslobj.pending():
                    chunk = sslobj.read(self.max_size)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except sslproto.SSLAgainErrors:
                pass
            if chunks:
                # An answer written while the request is handled (a cached poll is answered at once)
                # is encrypted and sent below, not in a callback of its own.
                self._reading = True
                try:
                    base._app_protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                finally:
                    self._reading = False
            if not chunk:  # close_notify: the stdlib's shutdown path from here
                base._call_eof_received()
                base._start_shutdown()
                return
            if base._write_backlog:
                if base._state is _WRAPPED:
                    self._flush_appdata()
                else:
                    base._do_write()
            elif base._outgoing.pending and not base._ssl_writing_paused:
                base._transport.write(base._outgoing.read())  # e.g. TLS 1.3 session tickets
            self._check_flow()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _write_appdata(self, list_of_data: Any) -> None:
        """Queue the application's bytes; they are encrypted once the current callback is done.

        uvicorn writes a response's head and body separately: deferred to the end of the loop
        iteration they go out as one TLS record in one send(). Closing still sends everything
        queued, because the stdlib's shutdown path drains the backlog first.
        """
        base: Any = self
        if base._state is not _WRAPPED:
            super()._write_appdata(list_of_data)
            return
        backlog = base._write_backlog
        for data in list_of_data:
            backlog.append(data)
            base._write_buffer_size += len(data)
        if not self._flush_scheduled and not self._reading:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_appdata)
        if base._write_buffer_size >= base._outgoing_high_water:  # adding can only cross upwards
            self._check_flow()

    def _flush_appdata(self) -> None:
        self._flush_scheduled = False
        base: Any = self
        backlog = base._write_backlog
        if base._state is not _WRAPPED or not backlog:
            return
        try:
            data = backlog[0] if len(backlog) == 1 else b"".join(backlog)
            try:
                written = base._sslobj.write(data)
            except sslproto.SSLAgainErrors:
                written = 0
            backlog.clear()
            if written < len(data):  # left for the stdlib's _do_write, as it would leave it
                backlog.append(memoryview(data)[written:])
            base._write_buffer_size = len(data) - written
            if base._outgoing.pending and not base._ssl_writing_paused:
                base._transport.write(base._outgoing.read())
            self._check_flow()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _check_flow(self) -> None:
        """The stdlib's two flow-control checks, called only when a threshold is actually crossed."""
        base: Any = self
        queued = base._outgoing.pending + base._write_buffer_size
        if base._app_writing_paused:
            if queued <= base._outgoing_low_water:
                base._control_app_writing()
        elif queued >= base._outgoing_high_water:
            base._control_app_writing()
        pending_in = base._incoming.pending
        if base._ssl_reading_paused:
            if pending_in <= base._incoming_low_water:
                base._control_ssl_reading()
        elif pending_in >= base._incoming_high_water:
            base._control_ssl_reading()

    def _check_handshake_timeout(self) -> None:
        base: Any = self
        if base._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            log.info(
                "TLS handshake from %s not complete within %g s; connection closed",
                _peer(self._transport),
                self._ssl_handshake_timeout,
            )
        super()._check_handshake_timeout()
