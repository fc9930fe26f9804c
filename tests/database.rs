//! The seeds' database example, for real: a MariaDB server from Debian's packages in an image
//! (a Debian base rootfs made on the host with `debootstrap`, imported, the server installed
//! inside a container through the container's own network, committed), started with
//! `-d -p HOSTPORT:3306 -v dbdata:/var/lib/mysql -e MYSQL_ROOT_PASSWORD=…`; the host's `mariadb`
//! client creates a table through the published port; the container is removed, and a new one
//! on the same volume still has the table.
//!
//! The base rootfs is cached in `/var/cache/strata-tests/` (rebuilt when missing); the package
//! installation reaches Debian's mirror, the only network this machine has.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::container::*;
use common::debian::debian_base;

/// The image's entrypoint (the README's walkthrough uses the same file).
const ENTRYPOINT: &str = include_str!("../examples/mariadb/entrypoint.sh");

/// Runs the host's `mariadb` client against `127.0.0.1:port`.
fn sql(port: u16, query: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["--protocol=TCP", "-h", "127.0.0.1", "-P", &port.to_string(), "-uroot", "-p123456", "-N", "-e", query])
        .output()
        .expect("mariadb client (Debian package mariadb-client)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Waits until the server answers through the published port.
fn wait_for_server(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match sql(port, "SELECT 1") {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("the server never answered on {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[test]
fn root_the_seeds_database_keeps_its_table_in_a_named_volume() {
    if !common::require_root("root_the_seeds_database_keeps_its_table_in_a_named_volume") {
        return;
    }
    let env = Env::new();
    env.ok(&["import", debian_base().to_str().unwrap(), "debian:bookworm"]);
    let setup = format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; \
         apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null; \
         cat > /usr/local/bin/entrypoint.sh <<'EOF'\n{ENTRYPOINT}EOF\nchmod 755 /usr/local/bin/entrypoint.sh"
    );
    let out = env.cmd(&["run", "--name", "install", "debian:bookworm", "sh", "-c", &setup]).output().unwrap();
    assert!(out.status.success(), "installing mariadb-server: {}", String::from_utf8_lossy(&out.stderr));
    env.ok(&[
        "commit",
        "-c",
        r#"CMD ["/usr/local/bin/entrypoint.sh"]"#,
        "-c",
        "EXPOSE 3306",
        "-c",
        "VOLUME /var/lib/mysql",
        "install",
        "mariadb:seed",
    ]);
    env.ok(&["rm", "install"]);

    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let publish = format!("{port}:3306");
    let run = |name: &str| {
        let args = [
            "run",
            "-d",
            "--name",
            name,
            "-p",
            &publish,
            "-v",
            "dbdata:/var/lib/mysql",
            "-e",
            "MYSQL_ROOT_PASSWORD=123456",
        ];
        env.ok(&args.into_iter().chain(["mariadb:seed"]).collect::<Vec<_>>());
    };
    run("mysql01");
    wait_for_server(port);
    sql(
        port,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT, item TEXT); INSERT INTO shop.orders VALUES (1, 'tea')",
    )
    .unwrap();
    assert_eq!(sql(port, "SELECT item FROM shop.orders").unwrap(), "tea\n");
    env.ok(&["stop", "mysql01"]);
    env.ok(&["rm", "mysql01"]);
    assert!(env.container_ids().is_empty());
    let volumes = env.ok(&["volume", "ls"]);
    assert!(volumes.lines().any(|l| l.ends_with(" dbdata")), "{volumes}");

    run("mysql02");
    wait_for_server(port);
    assert_eq!(sql(port, "SELECT id, item FROM shop.orders").unwrap(), "1\ttea\n", "the table outlived its container");
    env.ok(&["rm", "-f", "mysql02"]);
    env.ok(&["volume", "rm", "dbdata"]);
}
