"""The heartbeat's pure parts (minisql/heartbeat.py): the beat statement, a
region's delay, and which regions lag (the master's promotion rule)."""

from __future__ import annotations

import pytest

from minisql.heartbeat import beat_sql, current_delay, delay_of, lagging_regions
from topology import RegionLoad

NOW = 1_000_000.0


def report(region: str, delay: float | None, age: float = 0.0) -> RegionLoad:
    return RegionLoad(region_id=region, delay=delay, reported_at=NOW - age)


def test_beat_sql_is_one_upsert_of_the_writers_row():
    sql = beat_sql("proxy3", 17, 1764585346.1234567)
    assert sql == (
        "INSERT INTO mysql.minisql_heartbeat (writer, seq, beat_at) VALUES ('proxy3', 17, 1764585346.123457) "
        "ON DUPLICATE KEY UPDATE seq = VALUES(seq), beat_at = VALUES(beat_at)"
    )


@pytest.mark.parametrize("writer", ["", "a'b", "x" * 65, "proxy 1"])
def test_beat_sql_refuses_writer_names_that_need_quoting(writer):
    with pytest.raises(ValueError):
        beat_sql(writer, 1, NOW)


def test_delay_is_the_age_of_the_newest_beat():
    assert delay_of(None, NOW) is None
    assert delay_of(NOW - 2.5, NOW) == 2.5
    assert delay_of(NOW + 0.3, NOW) == 0.0  # a proxy's clock a little ahead: no negative delay


def test_a_report_ages_while_its_region_is_silent():
    assert current_delay(report("r1", 0.5, age=10.0), NOW) == 10.5
    assert current_delay(report("r1", 0.5, age=-1.0), NOW) == 0.5  # the region's clock ahead of ours
    assert current_delay(report("r1", None), NOW) is None


LAG_CASES = [
    # (why, reports {region: (delay, age)}, live, expected lagging)
    ("all keep up", {"r1": (0.4, 1), "r2": (0.9, 2), "r3": (0.1, 0)}, ["r1", "r2", "r3"], set()),
    ("one far behind the others", {"r1": (0.4, 1), "r2": (9.0, 1), "r3": (0.1, 0)}, ["r1", "r2", "r3"], {"r2"}),
    ("exactly at the threshold is not lagging", {"r1": (0.0, 0), "r2": (5.0, 0)}, ["r1", "r2"], set()),
    ("a region whose reports stopped falls behind", {"r1": (0.4, 0), "r2": (0.4, 8)}, ["r1", "r2"], {"r2"}),
    ("no proxy anywhere: everyone equally behind, nobody lagging",
     {"r1": (300.0, 1), "r2": (301.0, 2)}, ["r1", "r2"], set()),
    ("no beats reported at all: nobody lagging", {"r1": (None, 0), "r2": (None, 0)}, ["r1", "r2"], set()),
    ("no beat on one region while others have them", {"r1": (0.2, 0), "r2": (None, 0)}, ["r1", "r2"], {"r2"}),
    ("no load report yet counts as no beat", {"r1": (0.2, 0)}, ["r1", "r2"], {"r2"}),
    ("reports of regions that are not live are ignored", {"r1": (0.2, 0), "r9": (0.0, 0)}, ["r1"], set()),
]


@pytest.mark.parametrize("why, reports, live, expected", LAG_CASES, ids=[c[0] for c in LAG_CASES])
def test_lagging_regions(why, reports, live, expected):
    loads = {r: report(r, d, age) for r, (d, age) in reports.items()}
    assert lagging_regions(loads, live, NOW, max_delay=5.0) == frozenset(expected)


def test_region_load_carries_the_delay_through_zookeeper_json():
    load = RegionLoad(region_id="r1", delay=1.25, reported_at=NOW)
    assert RegionLoad.from_dict(load.to_dict()) == load
    assert RegionLoad.from_dict({"region_id": "r1"}).delay is None  # a report from before heartbeats
