"""The cluster's shared vocabulary: regions, table placement and leaders.

These are plain immutable values.  The topology service turns them into JSON
znodes and back; proxy, master and region only ever see these objects.

A `Placement` is a whole snapshot of where every table lives.  It carries the
ZooKeeper version of the znode it was read from as its `version` (the epoch):
a proxy swaps its snapshot whole when a newer version arrives, and the master
writes a changed snapshot back with compare-and-set on that version.  Methods
that "change" a placement return a new object; nothing here is mutated in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any, Iterable, Mapping


class ReplicaState(str, Enum):
    """Where a replica copy stands relative to its primary.

    Only IN_SYNC replicas are read from and may be promoted.  Writes reach
    IN_SYNC and FILLING replicas.  FILLING: an online copy (region/fill.py):
    every write goes to it inside the client's transaction while a region
    copies the existing rows in key chunks.  COPYING: the offline fallback
    (tables without a primary key, with triggers, foreign keys or a
    non-transactional engine): a snapshot copy that receives no writes and is
    checksum-compared before it counts.  STALE replicas missed a write (their
    region failed mid-statement) and must be rebuilt.
    """

    IN_SYNC = "in_sync"
    FILLING = "filling"
    COPYING = "copying"
    STALE = "stale"


@dataclass(frozen=True)
class RegionInfo:
    """What a live region advertises in its ephemeral znode.

    No credentials: the MySQL password comes from each process's own secrets
    file, never from ZooKeeper.
    """

    region_id: str
    host: str
    mysql_port: int
    metrics_port: int = 0
    mysql_version: str = ""
    started_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "region_id": self.region_id,
            "host": self.host,
            "mysql_port": self.mysql_port,
            "metrics_port": self.metrics_port,
            "mysql_version": self.mysql_version,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RegionInfo":
        return cls(
            region_id=str(data["region_id"]),
            host=str(data["host"]),
            mysql_port=int(data["mysql_port"]),
            metrics_port=int(data.get("metrics_port", 0)),
            mysql_version=str(data.get("mysql_version", "")),
            started_at=float(data.get("started_at", 0.0)),
        )


@dataclass(frozen=True)
class RegionLoad:
    """A region's latest load report (published every few seconds, ephemeral).

    The master's assignor ranks regions by these numbers; `reported_at` lets it
    ignore a report that has gone stale.  `delay` is seed 004's replica delay:
    seconds since the freshest proxy heartbeat this region holds (None: none
    yet); see minisql/heartbeat.py.
    """

    region_id: str
    tables: int = 0
    rows: int = 0
    data_bytes: int = 0
    qps: float = 0.0
    cpu_percent: float = 0.0
    reported_at: float = 0.0
    delay: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "region_id": self.region_id,
            "tables": self.tables,
            "rows": self.rows,
            "data_bytes": self.data_bytes,
            "qps": self.qps,
            "cpu_percent": self.cpu_percent,
            "reported_at": self.reported_at,
            "delay": self.delay,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RegionLoad":
        return cls(
            region_id=str(data["region_id"]),
            tables=int(data.get("tables", 0)),
            rows=int(data.get("rows", 0)),
            data_bytes=int(data.get("data_bytes", 0)),
            qps=float(data.get("qps", 0.0)),
            cpu_percent=float(data.get("cpu_percent", 0.0)),
            reported_at=float(data.get("reported_at", 0.0)),
            delay=None if data.get("delay") is None else float(data["delay"]),
        )


@dataclass(frozen=True)
class LeaderInfo:
    """Identity of a master candidate, as published while it leads."""

    master_id: str
    host: str = ""
    metrics_port: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"master_id": self.master_id, "host": self.host, "metrics_port": self.metrics_port}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LeaderInfo":
        return cls(
            master_id=str(data["master_id"]),
            host=str(data.get("host", "")),
            metrics_port=int(data.get("metrics_port", 0)),
        )


@dataclass(frozen=True)
class TablePlacement:
    """Where one table lives: a primary region and replica regions with states.

    `epoch` is bumped every time this table's placement changes, so a request
    planned against an old placement can be recognised.

    `references`: the (database, table) names this table's FOREIGN KEYs point
    at, as MariaDB reports them after each CREATE / ALTER (for a view: the
    tables and views it reads).  `links`: other tables it must share regions
    with although no constraint says so -- those its triggers' bodies reach,
    the sequence of a DEFAULT NEXTVAL.  Both are edges of the colocation graph.  They are edges of
    the colocation graph (`Placement.colocation_groups`): a table and every
    table it references live on the same regions, so MariaDB can check the
    constraint locally.  Names, not objects: a parent dropped and created
    again (foreign_key_checks=0) is linked again, as MariaDB links it.
    """

    database: str
    name: str
    primary: str
    replicas: Mapping[str, ReplicaState] = field(default_factory=dict)
    epoch: int = 1
    references: tuple[tuple[str, str], ...] = ()
    kind: str = "table"  # "view" (placed with what it reads, no rows of its own) or "sequence"
    links: tuple[tuple[str, str], ...] = ()  # other tables it must live with: its triggers' and DEFAULT NEXTVAL's
    # While a replica is FILLING: the columns of the primary key and every
    # UNIQUE key (writes that change them could move a row between copied and
    # uncopied key ranges: proxy/fillguard.py), and whether a UNIQUE key other
    # than the primary key exists (then INSERT IGNORE / upserts wait too).
    fill_guard: tuple[str, ...] = ()
    fill_unique: bool = False

    @property
    def is_view(self) -> bool:
        return self.kind == "view"

    @property
    def key(self) -> tuple[str, str]:
        return (self.database, self.name)

    @property
    def in_sync_replicas(self) -> tuple[str, ...]:
        return tuple(r for r, s in self.replicas.items() if s == ReplicaState.IN_SYNC)

    @property
    def write_regions(self) -> tuple[str, ...]:
        """The primary first, then in-sync replicas: the complete copies (reads,
        colocation, and every write but the filling copies' share of it)."""
        return (self.primary,) + self.in_sync_replicas

    @property
    def filling_replicas(self) -> tuple[str, ...]:
        return tuple(r for r, s in self.replicas.items() if s == ReplicaState.FILLING)

    @property
    def fanout_regions(self) -> tuple[str, ...]:
        """Regions a write to this table runs on: `write_regions`, then the
        FILLING copies (never read, never compared: fillguard.py)."""
        filling = self.filling_replicas
        return self.write_regions + filling if filling else self.write_regions

    @property
    def all_regions(self) -> tuple[str, ...]:
        """Every region holding any copy (DDL must reach all of them)."""
        return (self.primary,) + tuple(self.replicas)

    @property
    def copies(self) -> tuple[str, frozenset[str]]:
        """(primary, in-sync replica regions): what colocated tables must share."""
        return (self.primary, frozenset(self.in_sync_replicas))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "primary": self.primary,
            "replicas": {r: s.value for r, s in self.replicas.items()},
            "epoch": self.epoch,
        }
        if self.references:
            out["references"] = [list(r) for r in self.references]
        if self.kind != "table":
            out["kind"] = self.kind
        if self.links:
            out["links"] = [list(r) for r in self.links]
        if self.fill_guard:
            out["fill_guard"] = list(self.fill_guard)
        if self.fill_unique:
            out["fill_unique"] = True
        return out

    @classmethod
    def from_dict(cls, database: str, name: str, data: Mapping[str, Any]) -> "TablePlacement":
        return cls(
            database=database,
            name=name,
            primary=str(data["primary"]),
            replicas=MappingProxyType(
                {str(r): ReplicaState(s) for r, s in dict(data.get("replicas", {})).items()}
            ),
            epoch=int(data.get("epoch", 1)),
            references=tuple(sorted((str(r[0]), str(r[1])) for r in data.get("references", ()))),
            kind=str(data.get("kind", "table")),
            links=tuple(sorted((str(r[0]), str(r[1])) for r in data.get("links", ()))),
            fill_guard=tuple(str(c) for c in data.get("fill_guard", ())),
            fill_unique=bool(data.get("fill_unique", False)),
        )


@dataclass(frozen=True)
class Placement:
    """An immutable snapshot of every database and table placement.

    `databases` maps database name -> table name -> TablePlacement.  A database
    with no tables is still listed (CREATE DATABASE publishes it empty).
    `version` is the ZooKeeper znode version this snapshot was read from; -1
    means "the znode does not exist yet".
    """

    databases: Mapping[str, Mapping[str, TablePlacement]] = field(default_factory=dict)
    version: int = -1

    # -- queries -------------------------------------------------------------
    def has_database(self, database: str) -> bool:
        return database in self.databases

    def table(self, database: str, name: str) -> TablePlacement | None:
        tables = self.databases.get(database)
        if tables is None:
            return None
        return tables.get(name)

    def tables(self, database: str) -> tuple[TablePlacement, ...]:
        return tuple(self.databases.get(database, {}).values())

    def all_tables(self) -> Iterable[TablePlacement]:
        for tables in self.databases.values():
            yield from tables.values()

    def tables_on_region(self, region_id: str) -> tuple[TablePlacement, ...]:
        return tuple(t for t in self.all_tables() if region_id in t.all_regions)

    def colocation_groups(self) -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
        """Each table's colocation group: the sorted keys of every table linked
        to it by FOREIGN KEY references, in either direction and transitively
        (references to tables not in the placement are ignored).  A table with
        no link is a group of one."""
        parent: dict[tuple[str, str], tuple[str, str]] = {t.key: t.key for t in self.all_tables()}

        def root(key: tuple[str, str]) -> tuple[str, str]:
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        for t in self.all_tables():
            for ref in t.references + t.links:
                if ref in parent:
                    a, b = root(t.key), root(ref)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
        members: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key in parent:
            members.setdefault(root(key), []).append(key)
        return {key: tuple(sorted(members[root(key)])) for key in parent}

    def referencing(self, database: str, name: str) -> tuple[tuple[str, str], ...]:
        """Tables whose FOREIGN KEYs name (database, name), which need not exist yet."""
        return tuple(sorted(t.key for t in self.all_tables() if (database, name) in t.references and t.key != (database, name)))

    # -- derivations (each returns a new snapshot; version is kept so the
    #    writer can compare-and-set against the one it read) -------------------
    def with_database(self, database: str) -> "Placement":
        if database in self.databases:
            return self
        dbs = dict(self.databases)
        dbs[database] = MappingProxyType({})
        return replace(self, databases=MappingProxyType(dbs))

    def without_database(self, database: str) -> "Placement":
        dbs = dict(self.databases)
        dbs.pop(database, None)
        return replace(self, databases=MappingProxyType(dbs))

    def with_table(self, table: TablePlacement) -> "Placement":
        """Add or replace a table; bumps its epoch past any existing entry."""
        dbs = dict(self.databases)
        tables = dict(dbs.get(table.database, {}))
        old = tables.get(table.name)
        if old is not None and table.epoch <= old.epoch:
            table = replace(table, epoch=old.epoch + 1)
        tables[table.name] = table
        dbs[table.database] = MappingProxyType(tables)
        return replace(self, databases=MappingProxyType(dbs))

    def without_table(self, database: str, name: str) -> "Placement":
        if self.table(database, name) is None:
            return self
        dbs = dict(self.databases)
        tables = dict(dbs[database])
        tables.pop(name, None)
        dbs[database] = MappingProxyType(tables)
        return replace(self, databases=MappingProxyType(dbs))

    # -- encoding -------------------------------------------------------------
    def to_json(self) -> bytes:
        doc = {
            "format": 1,
            "databases": {
                db: {name: t.to_dict() for name, t in sorted(tables.items())}
                for db, tables in sorted(self.databases.items())
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | None, version: int) -> "Placement":
        if not raw:
            return cls(databases=MappingProxyType({}), version=version)
        doc = json.loads(raw)
        dbs = {
            db: MappingProxyType(
                {name: TablePlacement.from_dict(db, name, t) for name, t in tables.items()}
            )
            for db, tables in doc.get("databases", {}).items()
        }
        return cls(databases=MappingProxyType(dbs), version=version)


EMPTY_PLACEMENT = Placement(databases=MappingProxyType({}), version=-1)
