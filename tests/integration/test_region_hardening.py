"""The region MariaDB servers as the fixtures (and `minisql up`) run them:
file access confined to one directory, no LOAD DATA LOCAL, not root.

The backend user holds ALL PRIVILEGES (FILE included) and the proxy forwards
clients' SQL as that user, so these settings are what stands between a
client and the server's file system.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pymysql
import pytest

from minisql.localstack import MariaDBProcess, free_port

pytestmark = pytest.mark.integration


def _mysql_user_exists() -> bool:
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        return False
    return True


def _uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def test_file_access_is_confined_to_the_secure_file_dir(mariadbs):
    for m in mariadbs:
        conn = m.backend_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@secure_file_priv, @@local_infile")
                priv, local_infile = cur.fetchone()
                assert priv is not None and Path(priv) == m.secure_file_dir
                assert m.secure_file_dir.parent == m.data_dir.parent  # beside the datadir, not a "database"
                assert local_infile == 0
                # The backend user has FILE, yet cannot read outside the directory...
                cur.execute("SELECT LOAD_FILE('/etc/passwd')")
                assert cur.fetchone()[0] is None
                cur.execute("SELECT LOAD_FILE(%s)", (str(m.data_dir / "mysql" / "global_priv.MAD"),))
                assert cur.fetchone()[0] is None
                # ...nor write outside it.
                target = f"/tmp/minisql-outfile-{os.getpid()}-{m.port}"
                with pytest.raises(pymysql.err.MySQLError) as info:
                    cur.execute(f"SELECT 'x' INTO OUTFILE '{target}'")
                assert info.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT
                assert not os.path.exists(target)
                # Inside the directory it works (that is what the directory is for).
                inside = m.secure_file_dir / f"probe-{os.getpid()}.txt"
                try:
                    cur.execute(f"SELECT 'hello' INTO OUTFILE '{inside}'")
                    assert inside.read_text() == "hello\n"
                    cur.execute("SELECT LOAD_FILE(%s)", (str(inside),))
                    assert cur.fetchone()[0] == b"hello\n"
                finally:
                    inside.unlink(missing_ok=True)
        finally:
            conn.close()


def test_load_data_local_is_refused(mariadbs, tmp_path):
    m = mariadbs[0]
    data = tmp_path / "rows.csv"
    data.write_text("1\n2\n")
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.backend_user, password=m.backend_password,
        autocommit=True, local_infile=True,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS hardening_probe")
            cur.execute("CREATE TABLE IF NOT EXISTS hardening_probe.t (id INT)")
            with pytest.raises(pymysql.err.MySQLError) as info:
                cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE hardening_probe.t")
            assert info.value.args[0] in (1148, 3948, 4166), info.value  # "not allowed with this version"
            cur.execute("SELECT COUNT(*) FROM hardening_probe.t")
            assert cur.fetchone()[0] == 0
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS hardening_probe")
        conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users; as non-root mariadbd already runs unprivileged")
def test_mariadbd_runs_as_the_mysql_user(mariadbs):
    assert _mysql_user_exists(), "Debian's mariadb-server creates the mysql user; it is missing"
    mysql = pwd.getpwnam("mysql")
    for m in mariadbs:
        assert m.run_user == "mysql"
        assert "--user=mysql" in m.argv
        uids = _uids(m.pid)
        assert 0 not in uids and uids[0] == mysql.pw_uid, uids
        assert m.data_dir.stat().st_uid == mysql.pw_uid
        assert (m.data_dir / "mysql").stat().st_uid == mysql.pw_uid
        assert m.secure_file_dir.stat().st_uid == mysql.pw_uid
        assert m.secure_file_dir.stat().st_mode & 0o007 == 0  # not for other users


def test_unreachable_datadir_falls_back_to_root_with_a_warning(tmp_path, mariadb_template, caplog):
    """pytest's own temp dirs are 0700 root: the mysql user cannot enter them,
    so the server starts as before (root) instead of failing."""
    server = MariaDBProcess(tmp_path / "db", free_port())
    server.install_from_template(mariadb_template)
    try:
        with caplog.at_level("WARNING", logger="minisql.localstack"):
            server.start(timeout=120)
        assert server.query("SELECT @@local_infile") == [(0,)]
        assert Path(server.query("SELECT @@secure_file_priv")[0][0]) == server.secure_file_dir
        if os.geteuid() == 0 and _mysql_user_exists() and (tmp_path.stat().st_mode & 0o001) == 0:
            assert server.run_user is None
            assert "--user=root" in server.argv
            assert any("runs as root" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
