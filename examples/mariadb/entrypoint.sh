#!/bin/sh
# The seeds' database image's entrypoint, in short, as the official MariaDB image does it: on the
# first start, set the root password from MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD) for
# connections from anywhere, with a server that listens on no port; then the server itself
# becomes PID 1 (so `strata stop` shuts it down cleanly). root@localhost gets the password too:
# pasta hands a connection from the host's loopback to the container's loopback.
set -e
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
pw="${MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}"
if [ -n "$pw" ] && [ ! -e /var/lib/mysql/.root-password-set ]; then
    mariadbd --user=mysql --skip-networking &
    for i in $(seq 1 150); do mariadb-admin ping --silent 2>/dev/null && break; sleep 0.2; done
    mariadb -uroot -e "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; \
        ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$pw'); FLUSH PRIVILEGES;"
    touch /var/lib/mysql/.root-password-set
    mariadb-admin shutdown
    wait
fi
exec mariadbd --user=mysql --bind-address=0.0.0.0
