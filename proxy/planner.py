"""The pure planner: (statement, routing snapshot, session view) -> frozen Plan.

Modelled on Vitess vtgate's planbuilder: no sockets, no clocks, no mutation.
planbuilder.py turns the Plan into an engine primitive (engine.py).  Table
driven golden tests live in tests/unit/test_planner.py.

Routing rules (issue 2):
* a read goes to one region holding an in-sync copy of every table it names,
  preferring the first table's primary (so a single-table read hits its primary);
* a write goes to each written table's primary and then every in-sync replica,
  and every table it only reads must have a copy on each of those regions;
* a write whose copies could come out different is refused: UUID()/SYSDATE(),
  UPDATE/DELETE ... LIMIT without ORDER BY (same rule as MySQL's "unsafe for
  statement-based replication");
* anything that cannot be routed gets a clear MySQL error, never a wrong answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Mapping, Protocol

from minisql.errors import (
    CR_CONN_HOST_ERROR,
    ER_BAD_DB,
    ER_NO_DB,
    ER_NO_SUCH_TABLE,
    ER_NOT_SUPPORTED_YET,
    SqlError,
    unsupported,
)
from minisql.like import LikePattern
from topology import Placement, RegionInfo, ReplicaState, TablePlacement

from .catalog import catalog_refs, route_catalog
from .fillguard import check_fill
from .statements import (NONDETERMINISTIC, SYSTEM_SCHEMAS, Analysis, AnalysisCache, Kind, TableRef, classify,
                         split_insert_select, strip_leading_noise, sysdate_as_now)


class Op(Enum):
    READ = "read"  # one region
    WRITE = "write"  # primary first, then in-sync replicas
    ANY = "any"  # needs no table: any connection of the session (or a new one)
    STICKY = "sticky"  # the connection that ran the previous statement (SHOW WARNINGS)
    LOCAL = "local"  # answered by the proxy from the placement
    DDL = "ddl"  # sent to the master
    USE = "use"
    CATALOG = "catalog"  # information_schema about tables: every live region, merged (catalogscatter.py)


@dataclass(frozen=True, slots=True)
class LocalResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """Placement plus the live regions, swapped whole when either changes."""

    placement: Placement
    regions: Mapping[str, RegionInfo] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def epoch(self) -> int:
        return self.placement.version


class SessionView(Protocol):
    database: str | None
    last_insert_region: str | None
    last_insert_id: int


@dataclass(frozen=True, slots=True)
class Plan:
    op: Op
    sql: str = ""
    regions: tuple[str, ...] = ()
    kind: Kind | None = None
    tables: tuple[TablePlacement, ...] = ()
    local: LocalResult | None = None
    database: str | None = None  # USE target
    uses_rand: bool = False
    uses_last_insert_id: bool = False  # LAST_INSERT_ID() to substitute if run elsewhere
    epoch: int = -1
    analysis: Analysis | None = None  # DML: the facts planbuilder needs beyond routing (lock functions, CONNECTION_ID())
    catalog_keys: tuple[str, str] | None = None  # CATALOG: each row's schema and table columns
    catalog_views: tuple[str, ...] = ()  # CATALOG of any shape: the views about tables to merge first
    catalog_schema: str | None = None  # ... and the one schema whose rows they need
    key_order: tuple[str, str] | None = None  # UPDATE/DELETE ... LIMIT: ordered by this table's key (engine.KeyOrder)
    select_from: str | None = None  # INSERT ... SELECT across regions: the SELECT's region (insertselect.py)
    copies: tuple["Shipment", ...] = ()  # tables copied to the regions that run it first (crossread.py)
    sequences: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (sequence, its write regions): NEXTVALs evaluated there first
    filling: frozenset[str] = frozenset()  # regions in `regions` with a FILLING copy (fillguard.py)


@dataclass(frozen=True, slots=True)
class Shipment:
    """A table a statement reads, copied for that statement as a temporary table
    to regions `to` (which hold no in-sync copy of it) from region `source`."""

    database: str
    name: str
    source: str
    to: tuple[str, ...]


class WritesApart(SqlError):
    """A statement writing tables that are not placed on the same regions
    (a multi-table UPDATE/DELETE).  No copy could run it over all of them, so
    the session asks the master to colocate `others` with `table` (moving
    them, then keeping them together by links, as for a trigger) and plans
    it again; where it cannot (inside a transaction or under LOCK TABLES:
    the move's DROP of the old copies would wait for this session's own
    locks) the client gets this 1235."""

    def __init__(self, table: tuple[str, str], others: tuple[tuple[str, str], ...]) -> None:
        super().__init__(ER_NOT_SUPPORTED_YET, "MiniSQL Cluster does not support a write to tables placed on different "
                         "regions inside a transaction or under LOCK TABLES yet: run it once outside one, and the "
                         "tables are kept together from then on")
        self.table = table
        self.others = others


# -- helpers -------------------------------------------------------------------
IDENT = r"(?:`[^`]+(?:``[^`]*)*`|[\w$]+)"
QUALIFIED = rf"({IDENT})(?:\s*\.\s*({IDENT}))?"


def _unquote(ident: str | None) -> str | None:
    if ident is None:
        return None
    if ident.startswith("`") and ident.endswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def split_qualified(first: str, second: str | None) -> TableRef:
    if second is None:
        return TableRef(None, _unquote(first) or "")
    return TableRef(_unquote(first), _unquote(second) or "")


def resolve_table(ref: TableRef, session: SessionView, snap: RoutingSnapshot) -> TablePlacement:
    database = ref.database or session.database
    if database is None:
        raise SqlError(ER_NO_DB, "No database selected")
    temporary = getattr(session, "temp_tables", None)
    if temporary:  # a session's temporary table hides a table of the same name, as in MariaDB
        region = temporary.get((database.lower(), ref.name.lower()))
        if region is not None:
            return TablePlacement(database, ref.name, region, {})
    if database.lower() in SYSTEM_SCHEMAS:
        raise unsupported(f"queries on {database} (each region only knows its own tables; use SHOW TABLES / SHOW COLUMNS)")
    table = snap.placement.table(database, ref.name)
    if table is None:
        if _SEQUENCE_ENGINE_TABLE.match(ref.name) and snap.regions and snap.placement.has_database(database):
            return _everywhere(database, ref.name, snap)
        raise SqlError(ER_NO_SUCH_TABLE, f"Table '{database}.{ref.name}' doesn't exist")
    return table


# The SEQUENCE engine's virtual tables (seq_1_to_100, seq_0_to_20_step_2): every
# region answers them in every database, as one MariaDB does.
_SEQUENCE_ENGINE_TABLE = re.compile(r"^seq_\d+_to_\d+(?:_step_\d+)?$", re.I)


def _everywhere(database: str, name: str, snap: RoutingSnapshot) -> TablePlacement:
    """A table every live region has identically: an in-sync copy on each."""
    live = sorted(snap.regions)
    return TablePlacement(database, name, live[0], MappingProxyType({r: ReplicaState.IN_SYNC for r in live[1:]}))


def _is_table(ref: TableRef, session: SessionView, snap: RoutingSnapshot) -> bool:
    try:
        resolve_table(ref, session, snap)
    except SqlError:
        return False
    return True


class RegionUnavailable(SqlError):
    """A statement needs a region that is not live in the snapshot or refuses
    connections: nothing was sent to it.  The session holds such a statement
    for the failover (session.py, "buffering") before the client sees 2003."""

    def __init__(self, region: str, detail: str = "") -> None:
        super().__init__(CR_CONN_HOST_ERROR, detail or f"Region '{region}' is not available (failover may be in progress); "
                                                       "try again")
        self.region = region


def require_live(region: str, snap: RoutingSnapshot) -> None:
    if region not in snap.regions:
        raise RegionUnavailable(region)


def read_region(tables: tuple[TablePlacement, ...], snap: RoutingSnapshot) -> str:
    """A live region holding an in-sync copy of every table; primaries first."""
    common: set[str] | None = None
    for t in tables:
        copies = set(t.write_regions)
        common = copies if common is None else common & copies
    assert common is not None
    if not common:
        where = "; ".join(f"{t.database}.{t.name} on {', '.join(t.write_regions)}" for t in tables)
        raise unsupported(f"a query across tables that share no region ({where})")
    preferred = [t.primary for t in tables if t.primary in common]
    preferred += sorted(common - set(preferred))
    for region in preferred:
        if region in snap.regions:
            return region
    require_live(preferred[0], snap)
    raise AssertionError("unreachable")


def _write_regions(analysis: Analysis, writes: tuple[TablePlacement, ...], materialized: bool) -> tuple[str, ...]:
    """The regions a write runs on; `materialized`: the SELECT of an INSERT ...
    SELECT runs once (insertselect.py), so its functions are evaluated once."""
    regions = writes[0].write_regions
    for t in writes[1:]:
        if set(t.write_regions) != set(regions):
            raise WritesApart((writes[0].database, writes[0].name),
                              tuple((w.database, w.name) for w in writes[1:] if set(w.write_regions) != set(regions)))
    if len(writes) == 1:
        regions = writes[0].fanout_regions  # with its FILLING copies (fillguard.check_fill ran: one table only then)
    if len(regions) > 1 and not materialized:
        if analysis.nondeterministic and not analysis.uuid_once:  # (SYSDATE() is made NOW(), pinned: plan_dml; UUID() in VALUES: a literal)
            raise unsupported(f"{analysis.nondeterministic} in a write to a replicated table (each copy would get a different value)")
        if analysis.unordered_limit and len(writes) != 1:
            raise unsupported(
                f"{analysis.kind.value.upper()} ... LIMIT without ORDER BY on a replicated table (the copies could change different rows)"
            )
    return regions


# -- DML -------------------------------------------------------------------------
_SELECT_DATABASE = re.compile(r"^\s*select\s+((?:database|schema)\s*\(\s*\))\s*;?\s*$", re.I)


# Schemas a read of which any live region answers.  `mysql` is alike on every
# region (accounts are kept the same by the account sync; time zones and help
# tables are installed with MariaDB).  `performance_schema` and `sys` describe
# the server that answers: one region's instrumentation, as Vitess answers them
# from any tablet (there is no cluster-wide merge of per-server counters).
ANY_REGION_SCHEMAS = frozenset({"mysql", "performance_schema", "sys"})


def _reads_only_any_region_schemas(analysis: Analysis, session: SessionView) -> bool:
    if analysis.kind is not Kind.SELECT or analysis.writes or not analysis.reads:
        return False
    for ref in analysis.reads:
        database = ref.database or session.database
        if database is None or database.lower() not in ANY_REGION_SCHEMAS:
            return False
        if getattr(session, "temp_tables", None) and (database.lower(), ref.name.lower()) in session.temp_tables:
            return False
    return True


def _plan_catalog(sql: str, analysis: Analysis, refs: list[tuple[str, str]], snap: RoutingSnapshot,
                  session: SessionView) -> Plan:
    route = route_catalog(sql, analysis, refs, session.database)
    if route.with_tables:  # the cluster's tables too: planned on them alone, the catalog views travel along
        user = replace(analysis, reads=tuple(r for r in analysis.reads if (r.database or session.database or "").lower()
                                             not in SYSTEM_SCHEMAS))
        inner = plan_dml(sql, user, snap, session)
        if inner.op is not Op.READ:
            raise unsupported("a query joining information_schema with the cluster's tables placed apart")
        if route.materialize:
            return replace(inner, op=Op.CATALOG, catalog_views=route.materialize)
        return inner
    if route.table is not None:
        table = snap.placement.table(*route.table)
        if table is not None:
            return Plan(Op.READ, sql, (read_region((table,), snap),), Kind.SELECT, (table,), epoch=snap.epoch, analysis=analysis)
    if route.keys is not None:
        return Plan(Op.CATALOG, sql, kind=Kind.SELECT, epoch=snap.epoch, analysis=analysis, catalog_keys=route.keys)
    if route.materialize:
        return Plan(Op.CATALOG, sql, kind=Kind.SELECT, epoch=snap.epoch, analysis=analysis, catalog_views=route.materialize,
                    catalog_schema=route.schema)
    return Plan(Op.ANY, sql, kind=Kind.SELECT, epoch=snap.epoch, analysis=analysis)


def plan_dml(sql: str, analysis: Analysis, snap: RoutingSnapshot, session: SessionView) -> Plan:
    if analysis.tables:
        refs = catalog_refs(analysis, session.database)
        if refs is not None:
            return _plan_catalog(sql, analysis, refs, snap, session)
        if _reads_only_any_region_schemas(analysis, session):
            return Plan(Op.ANY, sql, kind=analysis.kind, epoch=snap.epoch, analysis=analysis)
    if not analysis.tables:
        m = _SELECT_DATABASE.match(sql)
        if m:
            # Answered here: the region we would ask may hold no table of it.
            return Plan(Op.LOCAL, local=LocalResult((m.group(1),), ((session.database,),)), epoch=snap.epoch)
        if analysis.uses_last_insert_id and session.last_insert_region in snap.regions:
            # Exact: the connection that ran the INSERT knows LAST_INSERT_ID().
            return Plan(Op.READ, sql, (session.last_insert_region,), Kind.SELECT, epoch=snap.epoch,  # type: ignore[arg-type]
                        analysis=analysis)
        return Plan(Op.ANY, sql, kind=analysis.kind, uses_last_insert_id=analysis.uses_last_insert_id, epoch=snap.epoch,
                    analysis=analysis)
    if analysis.scanned:  # names scanned from an unparsable read: keep those that are tables
        analysis = replace(analysis, reads=tuple(r for r in analysis.reads if _is_table(r, session, snap)))
        if not analysis.reads and not analysis.writes:
            return Plan(Op.ANY, sql, kind=Kind.SELECT, uses_last_insert_id=analysis.uses_last_insert_id, epoch=snap.epoch,
                        analysis=analysis)
    writes = tuple(resolve_table(r, session, snap) for r in analysis.writes)
    reads = tuple(resolve_table(r, session, snap) for r in analysis.reads)
    pinned: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if analysis.sequences and analysis.values_insert and len(writes) > 1:
        # INSERT ... VALUES (NEXTVAL(s), ...) into a table placed apart from s:
        # each call is evaluated once, on s's copies (engine.FanOutWrite), and
        # the table's copies get the value as a literal.
        target = writes[0]
        apart = [t for t in writes[1:] if set(t.write_regions) != set(target.write_regions)]
        if apart:
            pinned = tuple((f"{t.database}.{t.name}", t.write_regions) for t in apart)
            writes = tuple(t for t in writes if t not in apart)
    if analysis.kind is Kind.SELECT and not writes:  # (SELECT NEXTVAL(s) writes its sequence)
        tables = reads
        if not analysis.locking_read and not _share_a_region(tables):
            return _plan_cross_region_read(sql, analysis, tables, snap)
        region = tables[0].primary if analysis.locking_read else read_region(tables, snap)
        if analysis.locking_read:
            # Locks only order writers when taken on the primary.
            for t in tables[1:]:
                if t.primary != region:
                    raise unsupported("SELECT ... FOR UPDATE across tables with different primaries")
        require_live(region, snap)
        return Plan(Op.READ, sql, (region,), Kind.SELECT, tables, uses_last_insert_id=analysis.uses_last_insert_id, epoch=snap.epoch,
                    analysis=analysis)
    if not writes:
        # A write whose target the analyser could not name (an odd form of
        # INSERT/UPDATE/DELETE): refusing it is right, guessing a region is not.
        raise unsupported(f"this form of {analysis.kind.value.upper()} statement (no table to write found)")
    check_fill(analysis, sql, writes, reads)
    source = _materialize_from(sql, analysis, writes, reads, snap)
    regions = _write_regions(analysis, writes, materialized=source is not None)
    filling = frozenset(writes[0].filling_replicas)
    shipments = () if source is not None else _shipments(regions, reads, snap)
    for region in regions:
        require_live(region, snap)
    if analysis.uses_sysdate and len(regions) > 1:
        sql = sysdate_as_now(sql)
    return Plan(
        Op.WRITE, sql, regions, analysis.kind, writes + reads,
        uses_rand=analysis.uses_rand, uses_last_insert_id=analysis.uses_last_insert_id, epoch=snap.epoch,
        analysis=analysis,
        key_order=(writes[0].database, writes[0].name) if analysis.unordered_limit and len(regions) > 1 else None,
        select_from=source,
        copies=shipments,
        sequences=pinned,
        filling=filling,
    )


def _shipments(regions: tuple[str, ...], reads: tuple[TablePlacement, ...], snap: RoutingSnapshot) -> tuple[Shipment, ...]:
    """The tables a write reads that some of its regions lack: each is copied
    there for the statement (crossread.py), so every copy runs the client's
    own text over the same rows."""
    out: dict[tuple[str, str], Shipment] = {}
    for t in reads:
        to = tuple(r for r in regions if r not in t.write_regions)
        if to and (t.database, t.name) not in out:
            out[(t.database, t.name)] = Shipment(t.database, t.name, read_region((t,), snap), to)
    return tuple(out.values())


def _share_a_region(tables: tuple[TablePlacement, ...]) -> bool:
    common = set(tables[0].write_regions)
    for t in tables[1:]:
        common &= set(t.write_regions)
    return bool(common)


def _plan_cross_region_read(sql: str, analysis: Analysis, tables: tuple[TablePlacement, ...], snap: RoutingSnapshot) -> Plan:
    """A read whose tables share no region (crossread.py): it runs on the live
    region holding in-sync copies of the most of them (ties: the most
    primaries, then the id); each other table is copied there first."""
    def score(region: str) -> tuple[int, int, str]:
        return (-sum(region in t.write_regions for t in tables), -sum(region == t.primary for t in tables), region)

    candidates = sorted({r for t in tables for r in t.write_regions if r in snap.regions}, key=score)
    if not candidates:
        require_live(tables[0].primary, snap)
    region = candidates[0]
    copies = tuple(Shipment(t.database, t.name, read_region((t,), snap), (region,)) for t in tables if region not in t.write_regions)
    return Plan(Op.READ, sql, (region,), Kind.SELECT, tables, uses_last_insert_id=analysis.uses_last_insert_id,
                epoch=snap.epoch, analysis=analysis, copies=copies)


def _materialize_from(sql: str, analysis: Analysis, writes: tuple[TablePlacement, ...], reads: tuple[TablePlacement, ...],
                      snap: RoutingSnapshot) -> str | None:
    """The region where the SELECT of an INSERT/REPLACE ... SELECT that calls
    UUID() and the like runs once (insertselect.py): each copy would evaluate
    it differently.  None: run the statement's own text on each copy."""
    if len(writes) != 1 or analysis.kind not in (Kind.INSERT, Kind.REPLACE):
        return None
    if not analysis.nondeterministic or len(writes[0].write_regions) < 2:
        return None
    parts = split_insert_select(sql)
    if parts is None or NONDETERMINISTIC.search(parts[2]):
        return None  # in ON DUPLICATE KEY UPDATE: evaluated by each copy (refused by _write_regions)
    target = (writes[0].database.lower(), writes[0].name.lower())
    if parts[2] and any((t.database.lower(), t.name.lower()) != target for t in reads):
        return None  # its ON DUPLICATE KEY UPDATE may name the SELECT's columns: only MariaDB over both tables can judge
    return read_region(reads, snap) if reads else writes[0].primary



# -- SHOW / DESCRIBE -------------------------------------------------------------
_SHOW_TABLES = re.compile(
    rf"^show\s+(full\s+)?tables(?:\s+(?:from|in)\s+({IDENT}))?"
    r"""(?:\s+like\s+('[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")|\s+where\s+(.+?))?\s*;?\s*$""",
    re.I | re.S,
)
_SHOW_DATABASES = re.compile(r"^show\s+(?:databases|schemas)(?:\s+like\s+'([^'\\]*(?:(?:\\.|'')[^'\\]*)*)')?\s*;?\s*$", re.I)
_SHOW_TABLE_META = re.compile(
    rf"^show\s+(?:create\s+(?:table|view)|(?:full\s+)?(?:columns|fields)\s+(?:from|in)|(?:index|indexes|keys)\s+(?:from|in))\s+{QUALIFIED}(?:\s+(?:from|in)\s+({IDENT}))?",
    re.I,
)
_DESCRIBE_TABLE = re.compile(rf"^(?:describe|desc|explain)\s+{QUALIFIED}(?:\s+({IDENT}|'[^']*'))?\s*;?\s*$", re.I)
_EXPLAIN_STMT = re.compile(r"^(?:describe|desc|explain)(?:\s+(?:extended|partitions|format\s*=\s*\w+))?\s+(?=select|insert|update|delete|replace|with|\()", re.I)
_SHOW_TABLE_STATUS = re.compile(
    rf"^show\s+table\s+status(?:\s+(?:from|in)\s+({IDENT}))?\s+like\s+'([^'%_\\]+)'\s*;?\s*$", re.I
)
_SHOW_TABLE_STATUS_ANY = re.compile(
    rf"^show\s+table\s+status(?:\s+(?:from|in)\s+({IDENT}))?"
    r"""(?:\s+like\s+('[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")|\s+where\s+(.+?))?\s*;?\s*$""",
    re.I | re.S,
)
_TABLE_STATUS_COLUMNS = ", ".join(f"{column} AS `{name}`" for column, name in (
    ("TABLE_NAME", "Name"), ("ENGINE", "Engine"), ("VERSION", "Version"), ("ROW_FORMAT", "Row_format"),
    ("TABLE_ROWS", "Rows"), ("AVG_ROW_LENGTH", "Avg_row_length"), ("DATA_LENGTH", "Data_length"),
    ("MAX_DATA_LENGTH", "Max_data_length"), ("INDEX_LENGTH", "Index_length"), ("DATA_FREE", "Data_free"),
    ("AUTO_INCREMENT", "Auto_increment"), ("CREATE_TIME", "Create_time"), ("UPDATE_TIME", "Update_time"),
    ("CHECK_TIME", "Check_time"), ("TABLE_COLLATION", "Collation"), ("CHECKSUM", "Checksum"),
    ("CREATE_OPTIONS", "Create_options"), ("TABLE_COMMENT", "Comment"), ("MAX_INDEX_LENGTH", "Max_index_length"),
    ("TEMPORARY", "Temporary")))
_SHOW_ANY = re.compile(
    r"^show\s+(?:(?:global|session|local)\s+)?(?:variables|status|collation|character\s+set|charset|engines|"
    r"create\s+(?:database|schema|procedure|function|package(?:\s+body)?|event)|grants|plugins|privileges|open\s+tables|"
    r"(?:procedure|function|package(?:\s+body)?)\s+status)\b",
    re.I,
)
_SHOW_STICKY = re.compile(r"^show\s+(?:warnings|errors|count\s*\(\s*\*\s*\)\s+(?:warnings|errors))\b", re.I)


def _like(pattern: str | None) -> LikePattern | None:
    return None if pattern is None else LikePattern(pattern.replace("''", "'"))


def _table_type(table: TablePlacement) -> str:
    """SHOW FULL TABLES' Table_type, as MariaDB names it."""
    return {"view": "VIEW", "sequence": "SEQUENCE"}.get(table.kind, "BASE TABLE")


def _show_tables_where(snap: RoutingSnapshot, database: str, column: str, full: bool, where: str) -> str:
    """SHOW [FULL] TABLES ... WHERE <expr> as a SELECT over the placement's
    names, so the client's expression is judged by MariaDB itself."""
    def lit(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

    quoted = "`" + column.replace("`", "``") + "`"
    tables = sorted(snap.placement.tables(database), key=lambda t: t.name)
    rows = [f"SELECT {lit(t.name)} AS {quoted}" + (f", {lit(_table_type(t))} AS `Table_type`" if full else "")
            for t in tables]
    if not rows:
        rows = [f"SELECT NULL AS {quoted}" + (", NULL AS `Table_type`" if full else "") + " FROM DUAL WHERE 0"]
    return f"SELECT * FROM ({' UNION ALL '.join(rows)}) AS `tables` WHERE {where} ORDER BY 1"


def plan_show(sql: str, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> Plan:
    body = strip_leading_noise(sql).strip()
    m = _SHOW_DATABASES.match(body)
    if m:
        like = _like(m.group(1))
        names = ["information_schema"] + sorted(snap.placement.databases)
        rows = tuple((n,) for n in names if like is None or like.match(n))
        return Plan(Op.LOCAL, local=LocalResult(("Database",), rows), epoch=snap.epoch)
    m = _SHOW_TABLES.match(body)
    if m:
        database = _unquote(m.group(2)) or session.database
        if database is None:
            raise SqlError(ER_NO_DB, "No database selected")
        if not snap.placement.has_database(database) and database.lower() in SYSTEM_SCHEMAS:
            return Plan(Op.ANY, sql, kind=Kind.SHOW, epoch=snap.epoch)  # the same on every region
        if not snap.placement.has_database(database):
            raise SqlError(ER_BAD_DB, f"Unknown database '{database}'")
        pattern = None if m.group(3) is None else m.group(3)[1:-1].replace(m.group(3)[0] * 2, m.group(3)[0])
        like = _like(pattern)
        names = sorted(t.name for t in snap.placement.tables(database))
        names = [n for n in names if like is None or like.match(n)]
        column = f"Tables_in_{database}" + (f" ({pattern})" if pattern is not None else "")
        if m.group(4) is not None:  # WHERE: MariaDB evaluates it over the names, on any region
            return Plan(Op.ANY, _show_tables_where(snap, database, column, bool(m.group(1)), m.group(4)),
                        kind=Kind.SHOW, epoch=snap.epoch)
        if m.group(1):
            types = {t.name: _table_type(t) for t in snap.placement.tables(database)}
            local = LocalResult((column, "Table_type"), tuple((n, types[n]) for n in names))
        else:
            local = LocalResult((column,), tuple((n,) for n in names))
        return Plan(Op.LOCAL, local=local, epoch=snap.epoch)
    m = _SHOW_TABLE_META.match(body) or _DESCRIBE_TABLE.match(body)
    if m and not _EXPLAIN_STMT.match(body):
        ref = split_qualified(m.group(1), m.group(2))
        if _SHOW_TABLE_META.match(body) and m.group(3):
            ref = TableRef(_unquote(m.group(3)), ref.name if m.group(2) is None else ref.name)
        table = resolve_table(ref, session, snap)
        region = read_region((table,), snap)
        return Plan(Op.READ, sql, (region,), Kind.SHOW, (table,), epoch=snap.epoch)
    m = _EXPLAIN_STMT.match(body)
    if m:
        inner = body[m.end():]
        analysis = cache.get(inner, classify(inner))
        inner_plan = plan_dml(inner, analysis, snap, session)
        if inner_plan.copies:  # explained where it would run, over the same temporary copies
            region = inner_plan.regions[0]
            copies = tuple(c for c in inner_plan.copies if region in c.to)
            return Plan(Op.READ, sql, (region,), Kind.SHOW, inner_plan.tables, epoch=snap.epoch, copies=copies)
        region = inner_plan.regions[:1]
        if inner_plan.op is Op.ANY or not region:
            return Plan(Op.ANY, sql, kind=Kind.SHOW, epoch=snap.epoch)
        return Plan(Op.READ, sql, region, Kind.SHOW, inner_plan.tables, epoch=snap.epoch)
    m = _SHOW_TABLE_STATUS.match(body)
    if m:  # one named table: its primary knows its status
        table = resolve_table(TableRef(_unquote(m.group(1)), m.group(2)), session, snap)
        return Plan(Op.READ, sql, (read_region((table,), snap),), Kind.SHOW, (table,), epoch=snap.epoch)
    m = _SHOW_TABLE_STATUS_ANY.match(body)
    if m:  # every table (or a pattern): information_schema.TABLES merged, as SHOW TABLE STATUS names its columns
        database = _unquote(m.group(1)) or session.database
        if database is None:
            raise SqlError(ER_NO_DB, "No database selected")
        if not snap.placement.has_database(database) and database.lower() not in SYSTEM_SCHEMAS:
            raise SqlError(ER_BAD_DB, f"Unknown database '{database}'")
        where = "TABLE_SCHEMA = '" + database.replace("\\", "\\\\").replace("'", "''") + "'"
        if m.group(2) is not None:
            where += f" AND TABLE_NAME LIKE {m.group(2)}"
        select = f"SELECT {_TABLE_STATUS_COLUMNS} FROM information_schema.TABLES WHERE {where} ORDER BY TABLE_NAME"
        if m.group(3) is not None:
            select = f"SELECT * FROM ({select}) AS `status` WHERE {m.group(3)}"
        return plan(select, Kind.SELECT, snap, session, cache)
    if _SHOW_STICKY.match(body):
        return Plan(Op.STICKY, sql, kind=Kind.SHOW, epoch=snap.epoch)
    if _SHOW_ANY.match(body):
        return Plan(Op.ANY, sql, kind=Kind.SHOW, epoch=snap.epoch)
    raise unsupported(f"'{body[:60]}' through the gateway")


_USE = re.compile(rf"^use\s+({IDENT})\s*;?\s*$", re.I)


def plan_use(sql: str, snap: RoutingSnapshot) -> Plan:
    m = _USE.match(strip_leading_noise(sql).strip())
    if not m:
        raise SqlError(1064, "You have an error in your SQL syntax near 'USE'")
    return plan_use_database(_unquote(m.group(1)) or "", snap)


def plan_use_database(database: str, snap: RoutingSnapshot) -> Plan:
    if not snap.placement.has_database(database) and database.lower() not in SYSTEM_SCHEMAS:
        raise SqlError(ER_BAD_DB, f"Unknown database '{database}'")
    return Plan(Op.USE, database=database, epoch=snap.epoch)


def plan(sql: str, kind: Kind, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> Plan:
    """Plan one routed statement (transaction control and SET are the session's)."""
    if kind in (Kind.SELECT, Kind.INSERT, Kind.UPDATE, Kind.DELETE, Kind.REPLACE):
        return plan_dml(sql, cache.get(sql, kind), snap, session)
    if kind in (Kind.SHOW, Kind.DESCRIBE):
        return plan_show(sql, snap, session, cache)
    if kind is Kind.USE:
        return plan_use(sql, snap)
    if kind is Kind.DDL:
        return Plan(Op.DDL, sql, kind=Kind.DDL, database=session.database, epoch=snap.epoch)
    raise unsupported(f"'{strip_leading_noise(sql)[:60]}' through the gateway")


