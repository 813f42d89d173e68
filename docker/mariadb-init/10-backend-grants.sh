# Sourced by the official mariadb image's entrypoint on the FIRST start only
# (empty data directory), after it created MARIADB_USER@'%'.  That user gets
# rights on MARIADB_DATABASE alone; the MiniSQL regions and proxies create and
# drop databases and tables of their own, so grant it everything, as
# `minisql up` does for its local servers.
docker_process_sql --database=mysql <<EOSQL
GRANT ALL PRIVILEGES ON *.* TO '${MARIADB_USER}'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOSQL
