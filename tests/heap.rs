//! A process serving a Strata mount keeps its heap trimmed (`sys::heap`): after the session has
//! run and a 16 MiB block — the size of a FUSE request buffer — has been freed, a 1 MiB block
//! still gets a mapping of its own that is given back when freed. Left to itself, glibc raises
//! its thresholds to the largest mapped block freed, and a daemon's memory then only grows (the
//! soak's finding: about 3 MiB a minute under `stress-ng --dir`). Its own test binary: the
//! allocator's counters are the whole process's.

mod common;

use std::path::PathBuf;

use strata::fs::layers::StackSpec;
use strata::fs::options::MountSpec;

#[test]
fn root_a_serving_process_keeps_big_blocks_out_of_the_heap() {
    if !common::require_root("root_a_serving_process_keeps_big_blocks_out_of_the_heap") {
        return;
    }
    use strata::sys::heap::mapped_bytes as mapped;
    if mapped().is_none() {
        return; // not glibc
    }
    let t = tempfile::tempdir().unwrap();
    let dir = |n: &str| -> PathBuf {
        let p = t.path().join(n);
        std::fs::create_dir(&p).unwrap();
        p
    };
    let (lower, upper, work, mnt) = (dir("lower"), dir("upper"), dir("work"), dir("mnt"));
    std::fs::write(lower.join("f"), b"lower").unwrap();
    let spec = MountSpec {
        stack: StackSpec { lowers: vec![lower], upper: Some(upper), work: Some(work), ..Default::default() },
        ..Default::default()
    };
    let session = strata::fs::session::spawn(&spec, &mnt).unwrap();

    // Some requests of each kind the soak found growing the heap: mkdir, rmdir, listings.
    for i in 0..200 {
        std::fs::create_dir(mnt.join(format!("d{i}"))).unwrap();
    }
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 201);
    for i in 0..200 {
        std::fs::remove_dir(mnt.join(format!("d{i}"))).unwrap();
    }
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"lower");

    drop(std::hint::black_box(vec![1u8; 16 << 20]));
    let before = mapped().unwrap();
    let block = std::hint::black_box(vec![1u8; 1 << 20]);
    let during = mapped().unwrap();
    drop(block);
    let after = mapped().unwrap();
    session.umount_and_join().unwrap();
    assert!(during >= before + (1 << 20), "a 1 MiB block came from the heap: mapped {before} → {during} bytes");
    assert!(after + (1 << 20) <= during, "a freed 1 MiB block was kept: mapped {during} → {after} bytes");
}
