//! Criterion benchmarks of Strata's in-process hot paths, on real temp dirs and without
//! mounting: name lookup through layers, the merged listing of a big directory, packing an
//! upper dir into a layer tar (diff plan + tar), unpacking a layer tar, and parallel gzip.
//!
//! `cargo bench --bench hot`; under `cargo test` each runs once as a smoke test.

use std::ffi::OsStr;
use std::fs;
use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use strata::fs::inode::ROOT;
use strata::fs::layers::{Stack, StackSpec};
use strata::fs::{Config, Overlay};
use strata::image::{diff, lower::Lowers, pack, pgzip::ParGzEncoder, unpack};

/// Three lower layers of 100 dirs × 30 files each, the top one whiting out some names; the
/// upper dir holds a few hundred new files.
fn layers(root: &Path) {
    for l in 0..3 {
        for d in 0..100 {
            let dir = root.join(format!("l{l}/usr/d{d:02}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..30 {
                fs::write(dir.join(format!("f{}", l * 30 + f)), format!("{l} {d} {f}\n").repeat(8)).unwrap();
            }
        }
    }
    for d in 0..100 {
        let wh = root.join(format!("l0/usr/d{d:02}/f40"));
        rustix::fs::mknodat(rustix::fs::CWD, &wh, rustix::fs::FileType::CharacterDevice, 0.into(), 0).unwrap();
    }
    let big = root.join("l1/big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..10_000 {
        fs::File::create(big.join(format!("entry-{i:05}"))).unwrap();
    }
    for d in ["upper/usr/new", "work"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in 0..300 {
        fs::write(root.join(format!("upper/usr/new/n{f}")), vec![b'x'; 4096]).unwrap();
    }
}

fn overlay(root: &Path) -> Overlay {
    let spec = StackSpec {
        lowers: (0..3).map(|l| root.join(format!("l{l}"))).collect(),
        upper: Some(root.join("upper")),
        work: Some(root.join("work")),
        userxattr: !rustix::process::geteuid().is_root(),
        volatile: true,
    };
    Overlay::new(Stack::open(&spec).unwrap(), Config::default()).unwrap()
}

fn union_paths(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    layers(tmp.path());
    let ov = overlay(tmp.path());
    let usr = ov.lookup(ROOT, OsStr::new("usr")).unwrap().0.nodeid;
    let d = ov.lookup(usr, OsStr::new("d42")).unwrap().0.nodeid;
    c.bench_function("lookup: a file in the bottom of 3 layers", |b| {
        b.iter(|| {
            let (node, _) = ov.lookup(d, black_box(OsStr::new("f65"))).unwrap();
            ov.forget(node.nodeid, 1);
        })
    });
    c.bench_function("lookup: a whited-out name", |b| b.iter(|| ov.lookup(d, black_box(OsStr::new("f40"))).is_err()));
    c.bench_function("readdir: a dir merged from 3 layers (90 names, 1 whiteout)", |b| {
        b.iter(|| black_box(ov.list_dir(d).unwrap().len()))
    });
    let big = ov.lookup(ROOT, OsStr::new("big")).unwrap().0.nodeid;
    let mut g = c.benchmark_group("readdir");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(20);
    g.bench_function("a 10k-entry dir", |b| b.iter(|| black_box(ov.list_dir(big).unwrap().len())));
    g.finish();
}

fn layer_tars(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    layers(tmp.path());
    let lowers = Lowers::open(&(0..3).map(|l| tmp.path().join(format!("l{l}"))).collect::<Vec<_>>()).unwrap();
    let upper = fs::File::open(tmp.path().join("upper")).unwrap();
    let roots = pack::Roots { upper: upper.as_fd(), lowers: &lowers };
    let mut g = c.benchmark_group("layer");
    g.sample_size(20);
    g.bench_function("diff + pack: 300 new files against 3 layers", |b| {
        b.iter(|| {
            let plan = diff::plan(&tmp.path().join("upper"), &lowers).unwrap();
            black_box(pack::write_tar(&plan, &roots, Vec::new(), &mut |_| {}).unwrap().len())
        })
    });
    let plan = diff::plan(&tmp.path().join("upper"), &lowers).unwrap();
    let tar = pack::write_tar(&plan, &roots, Vec::new(), &mut |_| {}).unwrap();
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.bench_function("unpack: the same tar", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(tmp.path()).unwrap(),
            |dest| {
                let root = fs::File::open(dest.path()).unwrap();
                unpack::unpack(&tar[..], root.as_fd(), unpack::Options::for_current_user()).unwrap();
                dest
            },
            BatchSize::PerIteration,
        )
    });
    let text: Vec<u8> = (0..400_000u32).flat_map(|i| format!("line {i} of a layer\n").into_bytes()).collect();
    g.throughput(Throughput::Bytes(text.len() as u64));
    for threads in [1, 2] {
        g.bench_function(format!("gzip {} MiB on {threads} thread(s)", text.len() >> 20), |b| {
            b.iter(|| {
                let mut e = ParGzEncoder::new(Vec::new(), flate2::Compression::default(), threads).unwrap();
                e.write_all(&text).unwrap();
                black_box(e.finish().unwrap().len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, union_paths, layer_tars);
criterion_main!(benches);
