"""Hostile and malformed request bodies: each is refused with a 4xx and a short reason, and nothing is stored.

The same catalogue is thrown at self-registration (POST /edev) and at a DER document (PUT .../dercap).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx

from tests.support.bodies import NS as NS_DECL
from tests.support.bodies import SEP_XML, der_capability, end_device
from tests.support.servers import RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
SEP_NS_DECL = b'xmlns="urn:ieee:std:2030.5:ns"'

#: A refusal reason is a line or two for a human, not a stack trace or an echo of the body.
MAX_REASON_CHARS = 1024


def _replace_text(body: bytes, element: str, new_text: bytes) -> bytes:
    """The body with the text of its first `<element>` replaced (an entity reference, a bad value)."""
    out, count = re.subn(
        rb"<%s>[^<]*</%s>" % (element.encode(), element.encode()),
        b"<%s>%s</%s>" % (element.encode(), new_text, element.encode()),
        body,
        count=1,
    )
    assert count == 1, f"{element} not in {body!r}"
    return out


def _drop(body: bytes, element: str) -> bytes:
    out, count = re.subn(rb"<%s>.*?</%s>" % (element.encode(), element.encode()), b"", body, count=1)
    assert count == 1, f"{element} not in {body!r}"
    return out


def _with_doctype(root: str, body: bytes, subset: str) -> bytes:
    return f'<?xml version="1.0"?><!DOCTYPE {root} [{subset}]>'.encode() + body


def _nest(body: bytes, root: str, depth: int) -> bytes:
    """Put `depth` nested elements just inside the root element."""
    closing = f"</{root}>".encode()
    assert body.endswith(closing)
    return body[: -len(closing)] + b"<x>" * depth + b"</x>" * depth + closing


def _hostile_cases(
    server: RunningServer, root: str, valid: bytes, text_field: str, int_field: str, required: str
) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(name, body, headers) for every way a body can be hostile or broken."""
    settings = server.ctx.settings
    xxe_subset = '<!ENTITY xxe SYSTEM "file:///etc/passwd">'
    xxe = _with_doctype(root, _replace_text(valid, text_field, b"&xxe;"), xxe_subset)
    yield "external entity (XXE)", xxe, SEP_XML
    utf16 = xxe.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>')
    yield "XXE encoded as UTF-16", utf16.decode().encode("utf-16"), SEP_XML
    # in UTF-7 "+ADw-" is "<", so the bytes "<!DOCTYPE" never appear in the body
    utf7_prolog, utf7_root = xxe.split(f"<{root} ".encode(), 1)
    utf7 = (
        utf7_prolog.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-7"?>').replace(
            b"<!", b"+ADw-!"
        )
        + f"<{root} ".encode()
        + utf7_root
    )
    yield "XXE encoded as UTF-7", utf7, SEP_XML
    lol = ['<!ENTITY lol0 "lollollollollollollollollollol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    laughs = _with_doctype(root, _replace_text(valid, text_field, b"&lol9;"), "".join(lol))
    yield "billion laughs", laughs, SEP_XML
    xinclude = valid.replace(
        f"</{root}>".encode(),
        b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
        + f"</{root}>".encode(),
    )
    yield "XInclude of a local file", xinclude, SEP_XML
    oversize = valid + b" " * (settings.max_body_bytes + 1 - len(valid) + 10)
    yield "body over max_body_bytes", oversize, SEP_XML
    yield "nested one level deeper than allowed", _nest(valid, root, settings.max_xml_depth), SEP_XML
    yield "nested thousands of levels deep", _nest(valid, root, 5000), SEP_XML
    yield (
        "root in a foreign namespace",
        valid.replace(SEP_NS_DECL, b'xmlns="urn:example:not-2030.5"'),
        SEP_XML,
    )
    yield "root in no namespace", valid.replace(SEP_NS_DECL, b""), SEP_XML
    yield "truncated XML", valid[: len(valid) * 2 // 3], SEP_XML
    yield "empty body", b"", SEP_XML
    yield f"missing required {required}", _drop(valid, required), SEP_XML
    yield f"a word where {int_field} wants an integer", _replace_text(valid, int_field, b"twelve"), SEP_XML
    yield "JSON content type", b'{"sFDI": 1}', {"Content-Type": "application/json"}


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """A body streamed without Content-Length (chunked), so only the running count can stop it."""
    yield b"<EndDevice " + SEP_NS_DECL + b">"
    sent = 0
    while sent < total:
        yield b" " * size
        sent += size


def _assert_refused(name: str, r: httpx.Response, elapsed_s: float) -> None:
    if name == "JSON content type":
        assert r.status_code == 415, (name, r.status_code, r.text)
    elif name == "body over max_body_bytes":
        assert r.status_code in (413, 400), (name, r.status_code, r.text)
    else:
        assert r.status_code == 400, (name, r.status_code, r.text)
    reason = r.text.strip()
    assert reason, f"{name}: refusal without a reason"
    assert len(reason) <= MAX_REASON_CHARS, f"{name}: reason is not short: {reason!r}"
    assert "root:" not in r.text, f"{name}: /etc/passwd leaked into the response"
    assert elapsed_s < 3, f"{name}: took {elapsed_s:.1f} s to refuse"


def test_hostile_registration_bodies_are_refused_and_register_nothing(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    valid = end_device(me.sfdi, me.lfdi)
    cases = list(_hostile_cases(server, "EndDevice", valid, "lFDI", "sFDI", "sFDI"))
    with server.client("device-1") as c:
        for name, body, headers in cases:
            started = time.monotonic()
            r = c.post("/edev", content=body, headers=headers)
            _assert_refused(name, r, time.monotonic() - started)
            listing = xml_ok(c.get("/edev", params={"l": 10}))
            assert listing.get("all") == "0", f"{name}: an EndDevice was registered anyway"
        r = c.post("/edev", content=_chunks(server.ctx.settings.max_body_bytes + 8192), headers=SEP_XML)
        assert r.status_code in (413, 400), r.text
        assert r.text.strip()
        assert xml_ok(c.get("/edev", params={"l": 10})).get("all") == "0"
        # the catalogue's base body is fine: the refusals above were for what was done to it
        assert c.post("/edev", content=valid, headers=SEP_XML).status_code == 201


def test_hostile_der_capability_bodies_are_refused_and_store_nothing(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    valid = der_capability(5000)
    cases = list(_hostile_cases(server, "DERCapability", valid, "modesSupported", "value", "rtgMaxW"))
    with server.client("device-1") as c:
        r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
        assert r.status_code == 201, r.text
        dercap = f"{r.headers['location']}/der/1/dercap"
        assert c.get(dercap).status_code == 404
        for name, body, headers in cases:
            started = time.monotonic()
            r = c.put(dercap, content=body, headers=headers)
            _assert_refused(name, r, time.monotonic() - started)
            assert c.get(dercap).status_code == 404, f"{name}: a DERCapability was stored anyway"
        assert c.put(dercap, content=valid, headers=SEP_XML).status_code == 204
        assert xml_ok(c.get(dercap)).findtext("s:rtgMaxW/s:value", namespaces=NS) == "5000"


def test_largest_valid_post_rate_does_not_break_registration(
    server: RunningServer,
) -> None:
    """postRate is a UInt32: its largest value is schema-valid, so it is kept (or refused with a reason)."""
    me = server.pki.client("device-1")
    largest = 2**32 - 1
    body = (
        f"<EndDevice {NS_DECL}><deviceCategory>00</deviceCategory><lFDI>{me.lfdi}</lFDI>"
        f"<sFDI>{me.sfdi}</sFDI><changedTime>0</changedTime><postRate>{largest}</postRate></EndDevice>"
    ).encode()
    with server.client("device-1") as c:
        r = c.post("/edev", content=body, headers=SEP_XML)
    assert r.status_code in (201, 400), (r.status_code, r.text)
    with server.client("device-1") as c:
        if r.status_code == 400:
            assert r.text.strip()
            assert xml_ok(c.get("/edev", params={"l": 10})).get("all") == "0"
        else:
            edev = xml_ok(c.get(r.headers["location"]))
            assert edev.findtext("s:postRate", namespaces=NS) == str(largest)
