"""The region MariaDB servers as the fixtures (and `minisql up`) run them:
file access confined to one directory, not root, and LOAD DATA LOCAL
requests answered by the proxy only with its own client's data.

The backend user holds ALL PRIVILEGES (FILE included) and the proxy forwards
clients' SQL as that user, so these settings are what stands between a
client and the server's file system.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pymysql
import pytest

from minisql.localstack import MariaDBProcess, free_port
from proxy.backend import BackendConnection, BackendLost

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
                assert local_infile == 1  # the proxy relays its clients' files (proxy/localinfile.py)
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


def test_a_region_asking_for_a_file_the_client_never_offered_gets_nothing(mariadbs, tmp_path):
    """A region (or whoever answers on its port) that asks the proxy's backend
    side for a local file outside the proxy's own LOAD DATA LOCAL gets no byte:
    the connection is broken instead, and nothing is loaded."""
    m = mariadbs[0]
    secret = tmp_path / "secret.txt"
    secret.write_text("1\n2\n")
    admin = m.backend_connection()
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS hardening_probe")
            cur.execute("CREATE TABLE IF NOT EXISTS hardening_probe.t (id INT)")

        async def probe() -> None:
            conn = BackendConnection("r-probe", m.host, m.port)
            await conn.connect(m.backend_user, m.backend_password, 10)
            with pytest.raises(BackendLost):
                await conn.run(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE hardening_probe.t")
            assert conn.closed

        asyncio.run(probe())
        with admin.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM hardening_probe.t")
            assert cur.fetchone()[0] == 0
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS hardening_probe")
        admin.close()


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
        assert server.query("SELECT @@local_infile") == [(1,)]
        assert Path(server.query("SELECT @@secure_file_priv")[0][0]) == server.secure_file_dir
        if os.geteuid() == 0 and _mysql_user_exists() and (tmp_path.stat().st_mode & 0o001) == 0:
            assert server.run_user is None
            assert "--user=root" in server.argv
            assert any("runs as root" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
