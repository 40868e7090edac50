"""A closed-loop HTTPS load generator that presents client certificates (wrk cannot).

Each connection keeps alive and sends the next GET as soon as the previous answer is complete.
Run as a separate process so the server's figures are not shared with the generator's own work:

    python -m bench.loadgen --url https://127.0.0.1:8443/path --ca ca.pem --clients clients.json \
        --connections 64 --seconds 10

Prints one JSON line: requests, errors, seconds, requests/s, p50/p90/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from urllib.parse import urlsplit


class _Conn(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        latencies: list[float],
        stop_at: float,
        done: asyncio.Future[None],
        expect: bytes | None,
    ) -> None:
        self.request, self.latencies, self.stop_at, self.done, self.expect = (
            request,
            latencies,
            stop_at,
            done,
            expect,
        )
        self.buf = bytearray()
        self.sent_at = 0.0
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buf[:head_end]).lower()
            length_at = head.find(b"content-length:")
            length = (
                int(
                    head[
                        length_at + 15 : head.find(b"\r\n", length_at)
                        if head.find(b"\r\n", length_at) > 0
                        else None
                    ]
                )
                if length_at >= 0
                else 0
            )
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[head_end + 4 : total])
            ok = head.startswith(b"http/1.1 200") and (self.expect is None or self.expect in body)
            del self.buf[:total]
            now = time.perf_counter()
            if ok:
                self.latencies.append(now - self.sent_at)
            else:
                self.errors += 1
            if now >= self.stop_at:
                self.transport.close()  # type: ignore[attr-defined]
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(args: argparse.Namespace) -> dict[str, float]:
    url = urlsplit(args.url)
    with open(args.clients) as fh:
        clients = [c for c in json.load(fh)["clients"] if c["kind"] == "device"]
    targets = None  # lfdi -> path
    if args.targets:
        with open(args.targets) as fh:
            targets = json.load(fh)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    warm_until = time.perf_counter() + args.warmup
    stop_at = warm_until + args.seconds
    conns: list[_Conn] = []
    waits: list[asyncio.Future[None]] = []
    for i in range(args.connections):
        client = clients[i % len(clients)]
        path = targets[client["lfdi"]] if targets else url.path + (f"?{url.query}" if url.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {url.hostname}\r\nAccept: application/sep+xml\r\n\r\n".encode()
        )
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.load_cert_chain(client["cert"], client["key"])
        done: asyncio.Future[None] = loop.create_future()
        conn = _Conn(request, latencies, stop_at, done, args.expect.encode() if args.expect else None)
        await loop.create_connection(
            lambda c=conn: c, url.hostname, url.port, ssl=ctx, server_hostname="localhost"
        )
        conns.append(conn)
        waits.append(done)
    await asyncio.sleep(max(0.0, warm_until - time.perf_counter()))
    warm_count = len(latencies)
    await asyncio.wait_for(asyncio.gather(*waits), timeout=args.seconds + 30)
    measured = sorted(latencies[warm_count:])
    n = len(measured)

    def pct(p: float) -> float:
        return round(measured[min(n - 1, int(p * n))] * 1000, 2) if n else float("nan")

    return {
        "requests": n,
        "errors": sum(c.errors for c in conns),
        "seconds": args.seconds,
        "requests_per_s": round(n / args.seconds, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "connections": args.connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--clients", required=True, help="clients.json from `gridshare certs init`")
    parser.add_argument("--targets", help="JSON map lFDI -> path, so each device polls its own list")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--expect", help="a byte string every 200 body must contain")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
