//! `strata check`: it finds damage (a blob that is not its digest, an unpacked layer that is not
//! what its blob unpacks to, half a layer) and `--repair` removes it with the images it breaks;
//! and writers killed (SIGKILL) at points spread over their run — `load`, `commit`, `rmi`,
//! `prune`, `pull` (from a real registry) and `build` — leave a store that passes the check,
//! with every image that was complete before still complete and usable.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::container::*;

fn umoci_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/oci-umoci")
}

/// `strata check` of `env`'s store: exit code and output.
fn check(env: &Env, args: &[&str]) -> (i32, String) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn assert_whole(env: &Env, when: &str) {
    let (code, out) = check(env, &[]);
    assert_eq!(code, 0, "{when}: the store is not whole:\n{out}");
    assert!(out.ends_with("0 problems\n"), "{out}");
}

/// The first blob of the store bigger than `min` bytes.
fn a_blob(env: &Env, min: u64) -> PathBuf {
    let dir = env.root().join("blobs/sha256");
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).find(|p| p.metadata().unwrap().len() > min).unwrap()
}

#[test]
fn root_check_finds_damage_and_repair_removes_it() {
    if !common::require_root("root_check_finds_damage_and_repair_removes_it") {
        return;
    }
    let env = Env::new();
    env.ok(&["load", "-q", "-i", umoci_fixture().to_str().unwrap()]);
    assert_whole(&env, "after two loads");
    // A layer file changed behind the store's back.
    let multi = env.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", IMAGE]);
    let first: Vec<String> = serde_json::from_str(&multi).unwrap();
    let layer = env.root().join("layers").join(first[0].trim_start_matches("sha256:"));
    let file =
        ["data/keep.txt", "etc/passwd", "bin/busybox"].iter().map(|f| layer.join(f)).find(|p| p.is_file()).unwrap();
    std::fs::write(&file, "tampered\n").unwrap();
    let rel = file.strip_prefix(&layer).unwrap().display().to_string();
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("unpacked layer {}: /{rel}:", first[0])), "{out}");
    assert!(out.ends_with("1 problem\n"), "{out}");
    // --quick does not unpack again, so it does not see it.
    assert_eq!(check(&env, &["--quick"]).0, 0);
    let (code, out) = check(&env, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("removed unpacked layer {}", first[0])), "{out}");
    assert!(out.contains("removed image ") && out.contains("oci-multi:latest"), "{out}");
    let images = env.ok(&["images"]);
    assert!(!images.contains("oci-multi") && images.contains("oci-umoci"), "{images}");
    env.ok(&["run", "--rm", "--network", "none", "oci-umoci", "sh", "-c", "echo ok"]);
    // A blob that is not its digest, and a layer without its metadata.
    let blob = a_blob(&env, 1000);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let hex = blob.file_name().unwrap().to_string_lossy().into_owned();
    let (code, out) = check(&env, &["--quick"]);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("blob sha256:{hex}: its content hashes to sha256:")), "{out}");
    let (code, out) = check(&env, &["--repair", "--quick"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("removed blob sha256:{hex}")), "{out}");
    env.ok(&["prune"]);
    env.ok(&["load", "-q", "-i", fixture().to_str().unwrap()]);
    let some_layer = std::fs::read_dir(env.root().join("layers")).unwrap().flatten().map(|e| e.path());
    let meta = some_layer.into_iter().find(|p| p.extension().is_some_and(|e| e == "json")).unwrap();
    std::fs::remove_file(&meta).unwrap();
    let (code, out) = check(&env, &["--quick"]);
    assert_eq!(code, 1);
    assert!(out.contains("has no metadata"), "{out}");
    assert_eq!(check(&env, &["--repair", "--quick"]).0, 0);
    assert_whole(&env, "after the repairs");
}

/// Starts `strata ARGS`, kills it after `delay`, waits for it. Whether it was killed (rather
/// than done before).
fn kill_after(env: &Env, args: &[&str], delay: Duration) -> bool {
    let mut child = env.spawn(args);
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// Kill points spread over a writer's run: a fixed set of delays (ms), the same in every run.
const DELAYS_MS: [u64; 8] = [1, 5, 15, 30, 60, 100, 160, 250];

#[test]
fn root_killed_writers_leave_a_whole_store() {
    if !common::require_root("root_killed_writers_leave_a_whole_store") {
        return;
    }
    let env = Env::new();
    // A container with changes to commit (files big enough to take a while to pack).
    let script = "for i in 1 2 3 4 5 6 7 8; do head -c 4000000 /dev/urandom > /data/big$i; done; mkdir -p /data/many; \
                  for i in $(seq 1 300); do echo $i > /data/many/f$i; done";
    env.ok(&["run", "--name", "changed", "--network", "none", IMAGE, "sh", "-c", script]);
    for (i, ms) in DELAYS_MS.iter().enumerate() {
        let delay = Duration::from_millis(*ms);
        let tag = format!("killed:{i}");
        kill_after(&env, &["load", "-q", "-i", umoci_fixture().to_str().unwrap()], delay);
        assert_whole(&env, &format!("load killed after {ms} ms"));
        kill_after(&env, &["commit", "changed", &tag], delay * 4);
        assert_whole(&env, &format!("commit killed after {} ms", ms * 4));
        kill_after(&env, &["rmi", "oci-umoci"], delay);
        assert_whole(&env, &format!("rmi killed after {ms} ms"));
        kill_after(&env, &["prune", "-a"], delay);
        assert_whole(&env, &format!("prune killed after {ms} ms"));
        // The image that was complete before every kill still runs.
        assert_eq!(env.sh(&["--network", "none"], "cat /data/keep.txt"), "keep\nmore\n");
    }
    // And the writers, left alone, finish.
    env.ok(&["load", "-q", "-i", umoci_fixture().to_str().unwrap()]);
    env.ok(&["commit", "changed", "finally:1"]);
    assert_whole(&env, "at the end");
    env.ok(&["run", "--rm", "--network", "none", "finally:1", "test", "-s", "/data/big8"]);
}

/// The mounts left under `root` once they are gone or `limit` has passed.
fn mounts_gone_under(root: &Path, limit: Duration) -> Vec<std::path::PathBuf> {
    let start = Instant::now();
    loop {
        let left = common::mounts_under(root);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn root_killed_pulls_and_builds_leave_a_whole_store() {
    let test = "root_killed_pulls_and_builds_leave_a_whole_store";
    if !common::require_root(test) || !common::registry::require_registry() {
        return;
    }
    let reg = common::registry::Registry::start(common::registry::RegistryOptions::new());
    // An image worth pulling: the fixture and 24 MB more in a layer of its own.
    let src = Env::new();
    let script = "for i in 1 2 3; do head -c 8000000 /dev/urandom > /data/big$i; done";
    src.ok(&["run", "--name", "big", "--network", "none", IMAGE, "sh", "-c", script]);
    let name = format!("{}/crash/big:1", reg.host());
    src.ok(&["commit", "big", &name]);
    src.ok(&["push", &name]);
    // A build that runs a container, copies a file in and commits three layers.
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("blob"), vec![7u8; 3_000_000]).unwrap();
    let dockerfile = "FROM oci-multi\nRUN head -c 6000000 /dev/urandom > /r1\nCOPY blob /blob\n\
                      RUN cat /blob /r1 > /r2 && echo built > /built\n";
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let ctx = ctx.to_str().unwrap();
    let mut killed = (0, 0);
    for (i, ms) in DELAYS_MS.iter().enumerate() {
        let delay = Duration::from_millis(*ms);
        killed.0 += kill_after(&env, &["pull", &name], delay * 4) as usize;
        assert_whole(&env, &format!("pull killed after {} ms", ms * 4));
        // The next pull starts again from nothing of its own.
        let _ = env.run(&["rmi", &name]);
        killed.1 +=
            kill_after(&env, &["build", "-q", "--no-cache", "-t", &format!("killed:{i}"), ctx], delay * 8) as usize;
        assert_whole(&env, &format!("build killed after {} ms", ms * 8));
        // A RUN step's monitor is a process of its own: it kills the step's command when the
        // build goes, then unmounts; that takes a moment after the kill.
        let left = mounts_gone_under(env.dir.path(), Duration::from_secs(30));
        assert!(left.is_empty(), "build killed after {} ms left mounts behind: {left:?}", ms * 8);
        // The image that was complete before every kill still runs.
        assert_eq!(env.sh(&["--network", "none"], "cat /data/keep.txt"), "keep\nmore\n");
    }
    eprintln!("killed: {} pulls and {} builds of {}", killed.0, killed.1, DELAYS_MS.len());
    assert!(killed.0 >= 2 && killed.1 >= 2, "too few kills landed while the writer ran: {killed:?}");
    // Left alone, both finish, and what they made is whole and runs.
    env.ok(&["pull", &name]);
    env.ok(&["build", "-q", "-t", "finally:1", ctx]);
    assert_whole(&env, "at the end");
    env.ok(&["run", "--rm", "--network", "none", &name, "test", "-s", "/data/big3"]);
    assert_eq!(env.ok(&["run", "--rm", "--network", "none", "finally:1", "cat", "/built"]), "built\n");
}
