//! Replays every fuzz input kept in the repository — the seed corpora (`fuzz/corpus/TARGET/`)
//! and every input a fuzzer ever found a bug with (`fuzz/regressions/TARGET/`) — through the
//! same entry functions the AFL++ harnesses call (`fuzz/src/targets.rs`), so that CI checks
//! each on the stable toolchain without afl: no panic, nothing written outside the target dir,
//! each error one line. `scripts/fuzz` runs the fuzzers themselves.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The longest one input may take (the slowest seed takes well under a second).
const LIMIT: Duration = Duration::from_secs(30);

#[path = "../fuzz/src/targets.rs"]
mod targets;

/// Runs target `name` on every file of `dir`; returns how many it ran and the failures.
fn replay(name: &'static str, dir: &Path) -> (usize, Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return (0, Vec::new()) };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    let mut failures = Vec::new();
    for f in &files {
        let data = fs::read(f).unwrap();
        if let Err(why) = run_bounded(name, data) {
            failures.push(format!("{}: {why}", f.display()));
        }
    }
    (files.len(), failures)
}

/// Runs one input on its own thread: a panic or a run longer than [`LIMIT`] (a hang the
/// fuzzer saved) is an error.
fn run_bounded(name: &'static str, data: Vec<u8>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| targets::run(name, &data)));
        let _ = tx.send(r.map_err(|e| {
            e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        }));
    });
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(msg.unwrap_or_default()),
        Err(_) => Err(format!("still running after {} s", LIMIT.as_secs())),
    }
}

fn replay_target(name: &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let (seeds, mut failures) = replay(name, &root.join("corpus").join(name));
    let (found, more) = replay(name, &root.join("regressions").join(name));
    failures.extend(more);
    assert!(seeds > 0, "fuzz/corpus/{name}/ has no seed inputs");
    assert!(
        failures.is_empty(),
        "{} of {} inputs of {name} fail:\n{}",
        failures.len(),
        seeds + found,
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_test_here() {
    let here = include_str!("fuzz_corpus.rs");
    for (name, _) in targets::TARGETS {
        assert!(here.contains(&format!("replay_target(\"{name}\")")), "no replay test for fuzz target {name}");
    }
}

#[test]
fn unpack_corpus_replays() {
    replay_target("unpack");
}

#[test]
fn layer_corpus_replays() {
    replay_target("layer");
}

#[test]
fn union_corpus_replays() {
    replay_target("union");
}

#[test]
fn oci_json_corpus_replays() {
    replay_target("oci_json");
}

#[test]
fn reference_corpus_replays() {
    replay_target("reference");
}

#[test]
fn dockerfile_corpus_replays() {
    replay_target("dockerfile");
}
