"""`minisql up --mariadb-option` and `--proxies`: parsing, validation, the
mariadbd command line, port planning, banner and status -- without servers
(tests/integration/test_up_options.py runs the real thing)."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from minisql import cli
from minisql import localstack
from minisql.mariadb_options import FORBIDDEN, OptionError, merge_defaults, option_name, parse_option, parse_options
from minisql.status import format_status, local_proxies, up_is_running
from minisql.up import MAX_PROXIES, LocalCluster, run_up


# -- parse_option ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("--character-set-server=latin1", "--character-set-server=latin1"),
        ("character-set-server=latin1", "--character-set-server=latin1"),
        ("--default_storage_engine=MyISAM", "--default_storage_engine=MyISAM"),
        ("default-storage-engine=MyISAM", "--default-storage-engine=MyISAM"),
        ("--performance-schema", "--performance-schema"),
        ("performance-schema", "--performance-schema"),
        ("--loose-aria-pagecache-buffer-size=8M", "--loose-aria-pagecache-buffer-size=8M"),
        ("--init-connect=SET @a=1", "--init-connect=SET @a=1"),  # only the first '=' splits
        ("--sql-mode=", "--sql-mode="),  # an empty value is a value
        ("  --key-buffer-size=1M  ", "--key-buffer-size=1M"),
        ("--skip-log-bin", "--skip-log-bin"),  # a stack default, overridable either way
        ("--log-basename=mysqld", "--log-basename=mysqld"),  # the stack's --log-error/--pid-file come later
    ],
)
def test_accepted_options(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("forbidden", sorted(FORBIDDEN))
def test_every_forbidden_option_is_refused_in_every_spelling(forbidden):
    underscored = forbidden.replace("-", "_")
    spellings = [
        f"--{forbidden}=x", f"--{forbidden}", f"{forbidden}=x", f"--{underscored}=x", f"--{forbidden.upper()}=x",
        f"--loose-{forbidden}=x", f"--skip-{forbidden}", f"--enable-{forbidden}", f"--disable-{forbidden}",
        f"--maximum-{forbidden}=1", f"--loose-skip-{underscored}",
    ]  # fmt: skip
    for text in spellings:
        with pytest.raises(OptionError) as info:
            parse_option(text)
        message = str(info.value)
        assert "cannot be set with --mariadb-option" in message, text
        assert FORBIDDEN[forbidden] in message, text  # says why


@pytest.mark.parametrize(
    "text, means",
    [("--datad=/tmp/x", "--datadir"), ("--secure-file=/", "--secure-file-priv"), ("--local-inf=1", "--local-infile"),
     ("--bind=0.0.0.0", "--bind-address"), ("--skip-grant=1", "--grant-tables")],
)  # fmt: skip
def test_abbreviations_of_forbidden_options_are_refused(text, means):
    # mariadbd takes unambiguous prefixes: --datad=/x is --datadir=/x
    with pytest.raises(OptionError, match=f"abbreviation of {means}\\b"):
        parse_option(text)


def test_the_issue_examples_of_forbidden_options():
    for text, word in [
        ("--port=3306", "--port"), ("--socket=/tmp/s", "--socket"), ("--datadir=/var/lib/mysql", "--datadir"),
        ("--bind-address=0.0.0.0", "--bind-address"), ("--user=root", "--user"),
        ("--skip-grant-tables", "--skip-grant-tables"), ("--secure-file-priv=", "--secure-file-priv"),
        ("--local-infile", "--local-infile"), ("--local-infile=1", "--local-infile"),
    ]:  # fmt: skip
        with pytest.raises(OptionError) as info:
            parse_option(text)
        assert str(info.value).startswith(f"{word} cannot be set with --mariadb-option: "), text


@pytest.mark.parametrize(
    "text, why",
    [("", "empty"), ("   ", "empty"), ("-P3306", "short options"), ("-u", "short options"),
     ("--character-set-server latin1", "one word"), ("--", "not a MariaDB option name"),
     ("--=x", "not a MariaDB option name"), ("--a;b=1", "not a MariaDB option name")],
)  # fmt: skip
def test_malformed_options_are_refused(text, why):
    with pytest.raises(OptionError, match=why):
        parse_option(text)


def test_option_name_normalises():
    assert option_name("--Character_Set_Server=latin1") == "character-set-server"
    assert option_name("--loose-skip-name-resolve") == "name-resolve"
    assert option_name("--maximum-sort-buffer-size=1M") == "sort-buffer-size"
    assert option_name("--skip-") == "skip-"  # nothing after the modifier: left alone


def test_parse_options_stops_at_the_first_bad_one():
    assert parse_options(["key-buffer-size=1M", "--performance-schema"]) == ["--key-buffer-size=1M", "--performance-schema"]
    with pytest.raises(OptionError, match="--port"):
        parse_options(["key-buffer-size=1M", "--port=1", "--secure-file-priv="])


def test_merge_defaults_drops_the_charset_pair_together():
    defaults = ["--skip-log-bin", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"]
    assert merge_defaults(defaults, ["--default-storage-engine=MyISAM"]) == defaults
    # latin1 with the stack's utf8mb4 collation would stop mariadbd from starting
    assert merge_defaults(defaults, ["--character_set_server=latin1"]) == ["--skip-log-bin"]
    assert merge_defaults(defaults, ["--loose-collation-server=latin1_bin"]) == ["--skip-log-bin"]


# -- the mariadbd command line -------------------------------------------------------------
def _command(tmp_path, monkeypatch, options):
    monkeypatch.setattr(localstack, "require_program", lambda name, package: f"/usr/sbin/{name}")
    server = localstack.MariaDBProcess(tmp_path / "db", 3399, server_options=options, extra_args=["--test-only"])
    return server, server.command()


def _last(argv, name):
    """Index and value of the last occurrence of --name (mariadbd keeps the last)."""
    hits = [(i, a) for i, a in enumerate(argv) if a.startswith("--") and option_name(a) == name]
    return hits[-1]


def test_user_options_override_defaults_but_not_the_managed_options(tmp_path, monkeypatch):
    options = ["--max-connections=77", "--character-set-server=latin1", "--default-storage-engine=MyISAM"]
    server, argv = _command(tmp_path, monkeypatch, options)
    assert argv[:2] == ["/usr/sbin/mariadbd", "--no-defaults"]
    assert _last(argv, "max-connections")[1] == "--max-connections=77"
    assert _last(argv, "character-set-server")[1] == "--character-set-server=latin1"
    assert not any(option_name(a) == "collation-server" for a in argv[1:])  # derived by MariaDB
    first_user = argv.index(options[0])
    assert argv[first_user : first_user + 3] == options
    for name in ("datadir", "socket", "port", "bind-address", "secure-file-priv", "local-infile", "name-resolve",
                 "log-error", "pid-file"):  # fmt: skip
        index, _ = _last(argv, name)
        assert index > first_user + 2, name
    assert _last(argv, "secure-file-priv")[1] == f"--secure-file-priv={server.secure_file_dir}"
    assert _last(argv, "local-infile")[1] == "--local-infile=1"
    assert argv[-1] == "--test-only"  # extra_args: last, for tests


def test_without_user_options_the_command_keeps_the_stack_defaults(tmp_path, monkeypatch):
    _, argv = _command(tmp_path, monkeypatch, [])
    for default in localstack.DEFAULT_SERVER_OPTIONS:
        assert default in argv


def test_mariadb_process_refuses_a_forbidden_option(tmp_path):
    with pytest.raises(OptionError, match="--secure-file-priv"):
        localstack.MariaDBProcess(tmp_path / "db", 3399, server_options=["--secure-file-priv="])


# -- command line -------------------------------------------------------------------------
def test_up_parser_collects_options_and_proxies():
    args = cli.build_parser().parse_args(
        ["up", "--mariadb-option=--character-set-server=latin1", "--mariadb-option", "default_storage_engine=MyISAM",
         "--proxies", "3"]
    )  # fmt: skip
    assert args.mariadb_options == ["--character-set-server=latin1", "--default_storage_engine=MyISAM"]
    assert args.proxies == 3
    defaults = cli.build_parser().parse_args(["up"])
    assert defaults.mariadb_options == [] and defaults.proxies == 1


def test_up_parser_refuses_a_forbidden_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["up", "--mariadb-option=--skip-grant-tables"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --mariadb-option: --skip-grant-tables cannot be set with --mariadb-option" in err


@pytest.mark.parametrize("count", [0, -1, MAX_PROXIES + 1])
def test_up_refuses_a_bad_proxy_count(count, tmp_path, capsys):
    args = cli.build_parser().parse_args(["up", "--data-dir", str(tmp_path / "d"), "--proxies", str(count)])
    assert run_up(args) == 2
    assert f"--proxies must be between 1 and {MAX_PROXIES}" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was made


# -- ports, banner ----------------------------------------------------------------------------
def _cluster(tmp_path, *extra):
    return LocalCluster(cli.build_parser().parse_args(["up", "--data-dir", str(tmp_path), *extra]))


def test_proxies_get_consecutive_ports_and_metrics_ports(tmp_path):
    c = _cluster(tmp_path, "--proxies", "3", "--port", "7000", "--metrics-base-port", "9300")
    assert c.proxy_ports == {"p1": 7000, "p2": 7001, "p3": 7002}
    assert c.proxy_metrics_ports == {"p1": 9300, "p2": 9301, "p3": 9302}
    assert c.port_conflicts() == []
    assert [c._proxy_name(p) for p in c.proxy_ids] == ["proxy-p1", "proxy-p2", "proxy-p3"]
    assert _cluster(tmp_path)._proxy_name("p1") == "proxy"  # one proxy: logs/proxy.log as before


def test_the_most_proxies_and_masters_fit_the_metrics_range(tmp_path):
    c = _cluster(tmp_path, "--proxies", str(MAX_PROXIES), "--masters", "10", "--regions", "50")
    assert c.port_conflicts() == []
    # ZooKeeper, 50 MariaDBs, each proxy twice (MySQL + metrics), 10 masters, 50 regions: all distinct
    assert len({port for port, _ in c.wanted_ports()}) == 1 + 50 + 2 * MAX_PROXIES + 10 + 50


def test_proxy_workers_get_a_metrics_port_each(tmp_path):
    c = _cluster(tmp_path, "--proxies", "2", "--proxy-workers", "3", "--port", "7000", "--metrics-base-port", "9300")
    assert c.proxy_ports == {"p1": 7000, "p2": 7001}  # the workers of a proxy share its port
    assert c.proxy_metrics_ports == {"p1": 9300, "p2": 9303}  # worker w: + w
    metrics = sorted(port for port, who in c.wanted_ports() if "metrics" in who and "proxy" in who)
    assert metrics == [9300, 9301, 9302, 9303, 9304, 9305]
    assert c.port_conflicts() == []


def test_workers_keep_the_parents_arguments_with_their_own_metrics_port():
    from proxy.workers import worker_argv

    argv = ["proxy", "--zk", "h:1", "--workers", "2", "--port", "6033", "--metrics-port=9200", "--users", "u.json"]
    out = worker_argv(argv, 9200, 1)
    assert out[3:] == ["proxy", "--zk", "h:1", "--port", "6033", "--users", "u.json",
                       "--workers", "1", "--reuse-port", "--metrics-port", "9201"]
    assert worker_argv(argv, 0, 1)[-1] == "0"  # metrics off stays off


def test_port_conflicts_name_both_sides(tmp_path):
    c = _cluster(tmp_path, "--proxies", "3", "--port", "7000", "--zk-port", "7002")
    assert c.port_conflicts() == ["port 7002 is wanted by both ZooKeeper (--zk-port) and proxy p3 (--port)"]
    c = _cluster(tmp_path, "--proxies", "2", "--port", "3306", "--mysql-base-port", "3307")
    assert c.port_conflicts() == ["port 3307 is wanted by both MariaDB of r1 (--mysql-base-port) and proxy p2 (--port)"]
    c = _cluster(tmp_path, "--proxies", "2", "--port", "65535")
    assert c.port_conflicts() == ["proxy p2 (--port) would be port 65536, outside 1..65535"]


def test_banner_lists_every_proxy_and_the_mariadb_options(tmp_path):
    c = _cluster(tmp_path, "--proxies", "2", "--port", "7000", "--metrics-base-port", "9300",
                 "--mariadb-option=--character-set-server=latin1")  # fmt: skip
    banner = c._banner()
    assert "  proxies:   p1 127.0.0.1:7000, p2 127.0.0.1:7001 (any of them: same accounts and tables)" in banner
    assert "  metrics:   proxies p1 :9300, p2 :9301; masters" in banner
    assert "  mariadbd:  --character-set-server=latin1 (on every region)" in banner
    assert f"--data-dir {c.data_dir}" in banner
    single = _cluster(tmp_path)._banner()
    assert "proxies:" not in single and "mariadbd:" not in single
    assert "  metrics:   proxy :9200; masters" in single


# -- status ------------------------------------------------------------------------------------
def test_local_proxies_only_while_up_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr("minisql.localstack.port_accepts", lambda port, host="127.0.0.1", timeout=0.5: port == 7000)
    assert local_proxies(tmp_path) is None  # no up.lock at all
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "up.json").write_text(json.dumps({"proxies": [
        {"id": "p1", "host": "127.0.0.1", "port": 7000, "metrics_port": 9300},
        {"id": "p2", "host": "127.0.0.1", "port": 7001, "metrics_port": 9301},
        {"id": "broken"},
    ]}))  # fmt: skip
    lock = tmp_path / "up.lock"
    lock.write_text("123\n")
    assert not up_is_running(tmp_path) and local_proxies(tmp_path) is None  # a stale state file
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as `minisql up` holds it
        assert up_is_running(tmp_path)
        assert local_proxies(tmp_path) == [
            {"id": "p1", "host": "127.0.0.1", "port": 7000, "metrics_port": 9300, "serving": True},
            {"id": "p2", "host": "127.0.0.1", "port": 7001, "metrics_port": 9301, "serving": False},
        ]
    assert os.path.exists(lock)  # the check never removes it


def test_format_status_lists_proxies_only_when_asked():
    doc = {"leader": None, "regions": [], "tables": [], "empty_databases": [], "placement_version": 0}
    assert "Proxies" not in format_status(doc)
    text = format_status({**doc, "data_dir": "/d", "proxies": [
        {"id": "p1", "host": "127.0.0.1", "port": 7000, "metrics_port": 9300, "serving": True},
        {"id": "p2", "host": "127.0.0.1", "port": 7001, "metrics_port": 9301, "serving": False},
    ]})  # fmt: skip
    assert "Proxies (2, started by `minisql up` on /d):" in text
    assert "p1  127.0.0.1:7000  9300          yes" in text
    assert "p2  127.0.0.1:7001  9301          NO" in text
    assert "Proxies: no `minisql up` is running on /d" in format_status({**doc, "data_dir": "/d", "proxies": None})
