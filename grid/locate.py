"""Where a field is in a YAML (or JSON) file, so an error can name the line as well as the field.

Problems in a network or scenario file are named by their path (`sites[3].node`); a person fixing the
file looks for a line. The file is composed again with PyYAML, which keeps each node's position.
"""

from __future__ import annotations

import re

import yaml

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_parts(path: str) -> list[str | int]:
    """`network.branches[0].rating` -> ['network', 'branches', 0, 'rating']."""
    return [int(index) if index else key for key, index in _TOKEN.findall(path)]


def yaml_line(text: str, path: str) -> int | None:
    """The 1-based line where `path` is set in `text`: its key, or its item in a list.

    The deepest part of the path that exists is used (a missing key is reported where its mapping
    is); None when the text does not parse or the path names nothing in it.
    """
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line: int | None = None
    for part in path_parts(path):
        if node is None:
            break
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        else:
            break
    return line


def located_problems(file: str, text: str, problems: list[tuple[str, str]]) -> list[str]:
    """`file line N: path: message` for each (path, message); the line where it can be found."""
    out = []
    for path, message in problems:
        line = yaml_line(text, path) if path else None
        where = f"{file} line {line}" if line else file
        out.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")
    return out
