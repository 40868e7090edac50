"""Where a study's network comes from: a network file, an import directory, SimBench, or pandapower.

`load_network(spec)` accepts

* a GridShare network file (`.yaml`, `.yml`, `.json`; docs/network-format.md) or `demo` (the
  packaged demo feeder);
* a directory written by `gridshare plan import` (network.yaml, profiles.parquet or .csv, and the
  pandapower network the AC check solves);
* `simbench:<code>` (e.g. `simbench:1-MV-rural--0-sw`): the grid and its 2016 profiles;
* `pandapower:<name>` (a bundled network, e.g. `pandapower:create_cigre_network_lv`) or a
  `pandapower.to_json` file.

Every problem is a NetworkInputError naming the file, the field and, for YAML, the line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.netfile import NetworkFile, load_network_file, parse_network_document
from gridshare.grid.network import NetworkError
from gridshare.planning.errors import NetworkInputError, OutputError, yaml_line
from gridshare.planning.import_pandapower import (
    DEFAULT_POWER_FACTOR,
    ImportedNetwork,
    SiteChoice,
    builtin_network,
    import_pandapower,
    read_pandapower_json,
    require_pandapower,
)
from gridshare.planning.profiles import ProfileTable, read_profile_table, table_from_frame

IMPORT_FILES = {
    "network": "network.yaml",
    "profiles": "profiles.parquet",
    "profiles_csv": "profiles.csv",
    "pandapower": "pandapower.json",
    "meta": "import.json",
}


@dataclass
class LoadedNetwork:
    """A validated network with its sites, where it came from, and any profiles it brought."""

    nf: NetworkFile
    source: str
    version: str  # short digest of the network document: which network version a report used
    technology: dict[str, str] = field(default_factory=dict)  # site id -> generation shape
    profiles: ProfileTable | None = None
    imported: ImportedNetwork | None = None  # the pandapower model behind it, for the AC check
    notes: list[str] = field(default_factory=list)


def document_version(doc: Any) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of the document."""
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _parse(doc: Any, source: str, text: str | None = None) -> NetworkFile:
    try:
        return parse_network_document(doc, source=source)
    except NetworkError as exc:
        first = exc.problems[0] if exc.problems else None
        line = yaml_line(text, first.path) if text is not None and first is not None and first.path else None
        message = "; ".join(str(p) for p in exc.problems[:8])
        raise NetworkInputError(message, source, first.path if first else "", line) from None


def _from_file(path: Path) -> LoadedNetwork:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetworkInputError(exc.strerror or str(exc), str(path)) from None
    if path.suffix.lower() == ".json" and '"pandapowerNet"' in text[:2000]:
        net = read_pandapower_json(str(path))
        imported = import_pandapower(net, name=path.stem, source=str(path))
        return _from_imported(imported, None)
    try:
        nf = load_network_file(path)
    except NetworkError as exc:
        first = exc.problems[0] if exc.problems else None
        line = yaml_line(text, first.path) if first is not None and first.path else None
        raise NetworkInputError(
            "; ".join(str(p) for p in exc.problems[:8]) or str(exc),
            str(path),
            first.path if first else "",
            line,
        ) from None
    doc = yaml.safe_load(text) if path.suffix.lower() != ".json" else json.loads(text)
    return LoadedNetwork(nf=nf, source=str(path), version=document_version(doc))


def _from_imported(imported: ImportedNetwork, table: ProfileTable | None) -> LoadedNetwork:
    nf = _parse(imported.doc, imported.source)
    return LoadedNetwork(
        nf=nf,
        source=imported.source,
        version=document_version(imported.doc),
        technology=dict(imported.technology),
        profiles=table,
        imported=imported,
        notes=list(imported.notes),
    )


def load_network(
    spec: str | Path, *, sites: SiteChoice = "sgen", power_factor: float = DEFAULT_POWER_FACTOR
) -> LoadedNetwork:
    """Resolve `spec` (see the module docstring) to a validated network."""
    text = str(spec)
    if text in ("demo", "example:demo-feeder"):
        return _from_file(demo_feeder_path())
    if text.startswith("simbench:"):
        from gridshare.planning.import_simbench import import_simbench

        imported, table = import_simbench(text.split(":", 1)[1], sites=sites, power_factor=power_factor)
        return _from_imported(imported, table)
    if text.startswith("pandapower:"):
        name = text.split(":", 1)[1]
        net = builtin_network(name)
        return _from_imported(
            import_pandapower(net, name=name, source=text, sites=sites, power_factor=power_factor), None
        )
    path = Path(text)
    if path.is_dir():
        return read_import_dir(path)
    if not path.exists():
        raise NetworkInputError(
            "no such file or directory (or use demo, simbench:<code>, pandapower:<name>)", text
        )
    return _from_file(path)


def write_import_dir(loaded: LoadedNetwork, out: Path) -> list[Path]:
    """network.yaml, profiles.parquet (CSV without pyarrow), pandapower.json and import.json."""
    if loaded.imported is None:
        raise NetworkInputError(
            "only an imported network (SimBench or pandapower) can be written", loaded.source
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        network = out / IMPORT_FILES["network"]
        header = (
            f"# Imported by `gridshare plan import` from {loaded.imported.source}\n"
            "# Format: docs/network-format.md; profiles and the pandapower model sit beside this file.\n"
        )
        network.write_text(
            header + yaml.safe_dump(loaded.imported.doc, sort_keys=False, width=120), encoding="utf-8"
        )
        written.append(network)
        if loaded.profiles is not None:
            written.append(write_profile_table(loaded.profiles, out / IMPORT_FILES["profiles"]))
        pp = require_pandapower()
        pp_path = out / IMPORT_FILES["pandapower"]
        pp.to_json(loaded.imported.net, str(pp_path))
        written.append(pp_path)
        meta = out / IMPORT_FILES["meta"]
        meta.write_text(
            json.dumps(
                {
                    "source": loaded.imported.source,
                    "version": loaded.version,
                    "technology": loaded.technology,
                    "node_buses": loaded.imported.node_buses,
                    "branch_elements": loaded.imported.branch_elements,
                    "notes": loaded.notes,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        written.append(meta)
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), str(out)) from None
    return written


def write_profile_table(table: ProfileTable, path: Path) -> Path:
    """Parquet when pyarrow is installed, else CSV beside it; times in UTC."""
    import pandas as pd

    frame = pd.DataFrame({"time": pd.to_datetime(table.epoch_s, unit="s", utc=True), **dict(table.shapes)})
    try:
        frame.to_parquet(path, index=False)
        return path
    except ImportError:
        csv_path = path.with_suffix(".csv")
        frame.assign(time=frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv_path, index=False)
        return csv_path


def read_import_dir(path: Path) -> LoadedNetwork:
    network = path / IMPORT_FILES["network"]
    if not network.is_file():
        raise NetworkInputError(f"is not an import directory (no {IMPORT_FILES['network']})", str(path))
    loaded = _from_file(network)
    meta_path = path / IMPORT_FILES["meta"]
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise NetworkInputError(f"unreadable ({exc})", str(meta_path)) from None
    loaded.technology = dict(meta.get("technology", {}))
    loaded.notes = list(meta.get("notes", []))
    loaded.source = f"{meta.get('source', path)} (imported to {path})"
    tz = loaded.nf.network.timezone
    for key in ("profiles", "profiles_csv"):
        candidate = path / IMPORT_FILES[key]
        if candidate.is_file():
            loaded.profiles = read_profile_table(candidate, tz)
            break
    pp_path = path / IMPORT_FILES["pandapower"]
    if pp_path.is_file():
        net = read_pandapower_json(str(pp_path))
        doc = yaml.safe_load(network.read_text(encoding="utf-8"))
        loaded.imported = ImportedNetwork(
            doc=doc,
            net=net,
            node_buses={k: list(v) for k, v in meta.get("node_buses", {}).items()},
            site_elements={},
            background_loads={},
            background_sgens={},
            technology=loaded.technology,
            source=str(pp_path),
            notes=loaded.notes,
            branch_elements={k: list(v) for k, v in meta.get("branch_elements", {}).items()},
        )
    return loaded


__all__ = ["LoadedNetwork", "load_network", "read_import_dir", "table_from_frame", "write_import_dir"]
