//! Differential tests: every scenario runs on Strata and on kernel overlayfs over the same
//! layers; every result (value or errno) and the final trees must agree. Then Strata's upper dir
//! is mounted by the kernel (and by Strata again) and must show the same tree, with the same
//! inode numbers under Strata.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The same layer in the forms kernel overlayfs reads (it ignores the AUFS/OCI `.wh.` forms).
fn kernel_form(entries: &[Entry]) -> Vec<Entry> {
    entries
        .iter()
        .map(|e| match e {
            Entry::WhFile(p) => Entry::Whiteout(p.clone()),
            Entry::OpaqueFile(p) => Entry::Opaque(p.clone()),
            other => other.clone(),
        })
        .collect()
}

fn build_layers(t: &Path, prefix: &str, layers: &[Vec<Entry>]) -> Vec<PathBuf> {
    layers
        .iter()
        .enumerate()
        .map(|(i, entries)| {
            let d = t.join(format!("{prefix}{i}"));
            build_layer(&d, entries);
            d
        })
        .collect()
}

/// Runs `ops` on both filesystems over `layers` (top first) and returns every disagreement.
/// Strata reads the layers as given; the kernel reads them in its own forms.
fn differential(layers: &[Vec<Entry>], ops: &[Op]) -> Vec<String> {
    differential_with(layers, ops, &Checks::default())
}

/// Problems a test finds in Strata's upper dir, one line each.
type UpperCheck<'a> = &'a dyn Fn(&Path) -> Vec<String>;

/// What a differential run checks beyond results and trees, and what it tolerates.
#[derive(Default)]
struct Checks<'a> {
    /// Problems of Strata's upper dir (looked at unmounted).
    upper: Option<UpperCheck<'a>>,
    /// Link counts of directories may differ: at a copy-up Strata links every name of a lower
    /// file, copying up their directories, where the kernel (`index=on`) links each name when
    /// it is used; a directory with an upper part counts 1 link on both.
    any_dir_nlink: bool,
}

/// A stat line of a directory without its link count (see [`Checks::any_dir_nlink`]).
fn without_dir_nlink(outcome: common::ops::Outcome) -> common::ops::Outcome {
    let strip = |line: &str| match line.strip_prefix("d ") {
        Some(_) => line.split(" nlink=").next().unwrap_or(line).to_string(),
        None => line.to_string(),
    };
    outcome.map(|o| o.lines().map(strip).collect::<Vec<_>>().join("\n"))
}

/// [`differential`] with `checks`.
fn differential_with(layers: &[Vec<Entry>], ops: &[Op], checks: &Checks<'_>) -> Vec<String> {
    let tmp = tempfile::Builder::new().prefix("strata-diff-").tempdir_in("/tmp").unwrap();
    let t = tmp.path();
    let lowers = build_layers(t, "l", layers);
    let klayers: Vec<Vec<Entry>> = layers.iter().map(|l| kernel_form(l)).collect();
    let klowers = build_layers(t, "kl", &klayers);
    let (su, sw, sm) = (t.join("s/u"), t.join("s/w"), t.join("s/m"));
    let (ku, kw, km) = (t.join("k/u"), t.join("k/w"), t.join("k/m"));
    let mut ms = mount(Fs::Strata, &lowers, Some(&su), Some(&sw), &sm);
    let mut mk = mount(Fs::Kernel, &klowers, Some(&ku), Some(&kw), &km);
    let mut problems = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Remount = op {
            ms.unmount();
            mk.unmount();
            ms = mount(Fs::Strata, &lowers, Some(&su), Some(&sw), &sm);
            mk = mount(Fs::Kernel, &klowers, Some(&ku), Some(&kw), &km);
            continue;
        }
        let (mut rs, mut rk) = (run_op(&ms.mnt, op), run_op(&mk.mnt, op));
        if checks.any_dir_nlink {
            (rs, rk) = (without_dir_nlink(rs), without_dir_nlink(rk));
        }
        if rs != rk {
            problems.push(format!("op {i} {op:?}: strata={rs:?} kernel={rk:?}"));
        }
    }
    let (ss, sk) = (snapshot(&ms.mnt), snapshot(&mk.mnt));
    problems.extend(ss.diff(&sk, checks.any_dir_nlink).into_iter().map(|d| format!("final tree: {d}")));
    ms.unmount();
    mk.unmount();
    let upper = checks.upper.map(|check| check(&su)).unwrap_or_default();
    problems.extend(upper.into_iter().map(|p| format!("strata's upper: {p}")));
    problems.extend(reread_upper(&lowers, &klowers, &su, &ss, t));
    // The other way round: Strata reads the upper dir the kernel wrote as the kernel itself reads
    // it with its default options (without `index=on`, whose index directory only the kernel
    // uses to join hardlinks it copied up one name at a time).
    let kk = mount(Fs::KernelPlain, &klowers, Some(&ku), Some(&t.join("kkw")), &t.join("kkm"));
    let kernel_view = snapshot(&kk.mnt);
    kk.unmount();
    let sk2 = mount(Fs::Strata, &klowers, Some(&ku), Some(&t.join("skw")), &t.join("skm"));
    let strata_view = snapshot(&sk2.mnt);
    sk2.unmount();
    let reading = kernel_view.diff(&strata_view, false);
    problems.extend(reading.into_iter().map(|d| format!("strata reading the kernel's upper: {d}")));
    problems
}

/// Mounts Strata's upper dir with the kernel and with Strata again: same tree, same inodes.
fn reread_upper(lowers: &[PathBuf], klowers: &[PathBuf], upper: &Path, seen: &Snapshot, t: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let kk = mount(Fs::KernelPlain, klowers, Some(upper), Some(&t.join("kw2")), &t.join("km2"));
    let again = snapshot(&kk.mnt);
    kk.unmount();
    problems.extend(seen.diff(&again, true).into_iter().map(|d| format!("kernel reading strata's upper: {d}")));
    let s2 = mount(Fs::Strata, lowers, Some(upper), Some(&t.join("sw2")), &t.join("sm2"));
    let remounted = snapshot(&s2.mnt);
    s2.unmount();
    problems.extend(seen.diff(&remounted, false).into_iter().map(|d| format!("strata remount: {d}")));
    if seen.inos != remounted.inos {
        let moved: Vec<_> = seen.inos.iter().filter(|(k, v)| remounted.inos.get(*k) != Some(v)).take(5).collect();
        problems.push(format!("st_ino changed across remount: {moved:?}"));
    }
    problems
}

fn check(test: &str, layers: &[Vec<Entry>], ops: &[Op]) {
    if !require_root(test) {
        return;
    }
    let problems = differential(layers, ops);
    assert!(problems.is_empty(), "{test}: {} disagreements:\n{}", problems.len(), problems.join("\n"));
}

fn s(x: &str) -> String {
    x.to_string()
}

fn base() -> Vec<Vec<Entry>> {
    vec![
        vec![
            file("d/top", "top\n"),
            file("d/both", "from l0\n"),
            Entry::Whiteout(s("d/gone")),
            Entry::WhFile(s("d/gone2")),
            Entry::Opaque(s("opq")),
            file("opq/new", "n"),
            Entry::OpaqueFile(s("opq2")),
            file("opq2/x", "x"),
            Entry::Symlink(s("ln"), s("d/top")),
            Entry::Xattr(s("d/top"), s("user.colour"), b"blue".to_vec()),
        ],
        vec![
            file("d/both", "from l1\n"),
            file("d/gone", "hidden"),
            file("d/gone2", "hidden"),
            file("d/low", "low\n"),
            Entry::File(s("d/exe"), b"#!/bin/sh\n".to_vec(), 0o4755),
            file("opq/old", "hidden"),
            file("opq2/old", "hidden"),
            file("deep/a/b/c/file", "deep"),
            file("hl/one", "shared"),
            Entry::Hardlink(s("hl/two"), s("hl/one")),
            Entry::Fifo(s("fifo")),
            Entry::CharDev(s("dev/null"), 1, 3),
            Entry::Owner(s("d/low"), 1000, 1000),
            Entry::Dir("emptydir", 0o700),
        ],
    ]
}

#[test]
fn root_lookup_and_readdir_merge_all_whiteout_and_opaque_forms() {
    let ops = vec![
        Op::List(s("")),
        Op::List(s("d")),
        Op::List(s("opq")),
        Op::List(s("opq2")),
        Op::Read(s("d/both")),
        Op::Stat(s("d/gone")),
        Op::Stat(s("d/gone2")),
        Op::Stat(s("d/.wh.gone2")),
        Op::Stat(s("d")),
        Op::Stat(s("d/exe")),
        Op::Readlink(s("ln")),
        Op::Read(s("ln")),
        Op::GetXattr(s("d/top"), s("user.colour")),
        Op::ListXattr(s("d/top")),
        Op::SeekDir(s("d")),
        Op::Stat(s("emptydir")),
    ];
    check("root_lookup_and_readdir_merge_all_whiteout_and_opaque_forms", &base(), &ops);
}

#[test]
fn root_copy_up_on_every_metadata_and_data_change() {
    let ops = vec![
        Op::Append(s("d/low"), b"more\n".to_vec()),
        Op::Read(s("d/low")),
        Op::Stat(s("d/low")),
        Op::Chmod(s("d/both"), 0o600),
        Op::Chown(s("d/top"), 1000, 100),
        Op::Truncate(s("deep/a/b/c/file"), 2),
        Op::Read(s("deep/a/b/c/file")),
        Op::Utimes(s("d/exe"), 1_000_000),
        Op::Stat(s("d/exe")),
        Op::SetXattr(s("d/both"), s("user.k"), b"v".to_vec()),
        Op::GetXattr(s("d/both"), s("user.k")),
        Op::RemoveXattr(s("d/top"), s("user.colour")),
        Op::RemoveXattr(s("d/low"), s("user.none")),
        Op::SetXattr(s("d/low"), s("trusted.overlay.opaque"), b"y".to_vec()),
        Op::GetXattr(s("d/low"), s("trusted.overlay.opaque")),
        Op::List(s("d")),
        Op::Chmod(s("emptydir"), 0o750),
        Op::Stat(s("emptydir")),
        Op::Stat(s("deep/a/b")),
    ];
    check("root_copy_up_on_every_metadata_and_data_change", &base(), &ops);
}

#[test]
fn root_create_and_remove_over_whiteouts() {
    let ops = vec![
        Op::Write(s("d/gone"), b"back".to_vec()),
        Op::Read(s("d/gone")),
        Op::Unlink(s("d/low")),
        Op::Stat(s("d/low")),
        Op::Write(s("d/low"), b"again".to_vec()),
        Op::Unlink(s("d/low")),
        Op::Unlink(s("d/top")),
        Op::Mkdir(s("d/gone2"), 0o755),
        Op::List(s("d/gone2")),
        Op::Rmdir(s("deep")),
        Op::Unlink(s("deep/a/b/c/file")),
        Op::Rmdir(s("deep/a/b/c")),
        Op::Rmdir(s("deep/a/b")),
        Op::List(s("deep/a")),
        Op::Rmdir(s("deep/a")),
        Op::Rmdir(s("deep")),
        Op::Mkdir(s("deep"), 0o700),
        Op::List(s("deep")),
        Op::Symlink(s("target"), s("d/top")),
        Op::Readlink(s("d/top")),
        Op::Mkfifo(s("d/pipe")),
        Op::Stat(s("d/pipe")),
        Op::Mknod(s("d/zero"), Some((1, 5))),
        Op::Mknod(s("d/sock"), None),
        Op::Stat(s("d/zero")),
        Op::Stat(s("d/sock")),
        Op::Chmod(s("dev/null"), 0o600),
        Op::Chown(s("dev/null"), 5, 5),
        Op::Stat(s("dev/null")),
        Op::Rename(s("dev/null"), s("d/null"), 0),
        Op::Unlink(s("d/sock")),
        Op::Unlink(s("fifo")),
        Op::Rmdir(s("emptydir")),
        Op::Mkdir(s("emptydir"), 0o711),
        Op::Stat(s("emptydir")),
        Op::List(s("")),
        Op::List(s("d")),
    ];
    check("root_create_and_remove_over_whiteouts", &base(), &ops);
}

#[test]
fn root_rename_files_and_flags() {
    const NOREPLACE: u32 = 1;
    const EXCHANGE: u32 = 2;
    let ops = vec![
        Op::Rename(s("d/low"), s("d/moved"), 0),
        Op::Read(s("d/moved")),
        Op::Stat(s("d/low")),
        Op::Rename(s("d/both"), s("d/top"), NOREPLACE),
        Op::Rename(s("d/both"), s("d/top"), 0),
        Op::Read(s("d/top")),
        Op::Rename(s("d/top"), s("d/exe"), EXCHANGE),
        Op::Read(s("d/top")),
        Op::Read(s("d/exe")),
        Op::Rename(s("d/nothing"), s("d/x"), 0),
        Op::Rename(s("d/moved"), s("d/none"), EXCHANGE),
        Op::Rename(s("ln"), s("d/ln2"), 0),
        Op::Readlink(s("d/ln2")),
        Op::Rename(s("d/exe"), s("d/gone"), 0),
        Op::List(s("d")),
        Op::List(s("")),
    ];
    check("root_rename_files_and_flags", &base(), &ops);
}

#[test]
fn root_rename_directories_that_exist_in_lower_layers() {
    let ops = vec![
        Op::Rename(s("deep"), s("deeper"), 0),
        Op::Read(s("deeper/a/b/c/file")),
        Op::Stat(s("deep")),
        Op::Rename(s("d"), s("d2"), 0),
        Op::List(s("d2")),
        Op::Read(s("d2/both")),
        Op::Mkdir(s("d"), 0o755),
        Op::List(s("d")),
        Op::Rename(s("opq"), s("emptydir"), 0),
        Op::List(s("emptydir")),
        Op::Rename(s("deeper/a"), s("a"), 0),
        Op::Rename(s("a/b"), s("d2/b"), 0),
        Op::Read(s("d2/b/c/file")),
        Op::Mkdir(s("newdir"), 0o755),
        Op::Write(s("newdir/f"), b"x".to_vec()),
        Op::Rename(s("newdir"), s("hl"), 0),
        Op::Rename(s("newdir"), s("opq2"), 2),
        Op::List(s("opq2")),
        Op::List(s("newdir")),
        Op::List(s("")),
    ];
    check("root_rename_directories_that_exist_in_lower_layers", &base(), &ops);
}

#[test]
fn root_hardlinks_stay_one_object_across_copy_up() {
    let ops = vec![
        Op::Stat(s("hl/one")),
        Op::Append(s("hl/one"), b"+written".to_vec()),
        Op::Read(s("hl/two")),
        Op::Stat(s("hl/two")),
        Op::Link(s("hl/two"), s("d/three")),
        Op::Stat(s("d/three")),
        Op::Append(s("d/three"), b"+3".to_vec()),
        Op::Read(s("hl/one")),
        Op::Link(s("d/low"), s("d/low2")),
        Op::Stat(s("d/low")),
        Op::Chmod(s("d/low2"), 0o640),
        Op::Stat(s("d/low")),
        Op::Unlink(s("hl/one")),
        Op::Stat(s("hl/two")),
        Op::Link(s("d"), s("dlink")),
    ];
    check("root_hardlinks_stay_one_object_across_copy_up", &base(), &ops);
}

/// A lower directory `a` whose file `c/c` has a second name `c/e`, and a file `b/f` linked to
/// it from another directory.
fn linked_under_dir_layers() -> Vec<Vec<Entry>> {
    vec![vec![
        file("a/c/c", "lower 13 byte"),
        Entry::Hardlink(s("a/c/e"), s("a/c/c")),
        file("a/k/k", "lower 13 byte"),
        Entry::Hardlink(s("a/k/l"), s("a/k/k")),
        Entry::Dir("d", 0o755),
        file("x/y", "other 13 byte"),
        Entry::Hardlink(s("x/z"), s("x/y")),
        Entry::Hardlink(s("b/f"), s("x/y")),
    ]]
}

/// Both names of the renamed directory's file, as read, stat'ed and listed.
fn both_names(dir: &str, names: &[&str]) -> Vec<Op> {
    let mut ops = vec![Op::List(s(dir))];
    for n in names {
        ops.push(Op::Read(format!("{dir}/{n}")));
        ops.push(Op::Stat(format!("{dir}/{n}")));
    }
    ops
}

/// Whether `a` and `b` (under `upper`) are one file.
fn one_upper_file(upper: &Path, a: &str, b: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(upper.join(a)), std::fs::symlink_metadata(upper.join(b))) {
        (Ok(x), Ok(y)) if x.ino() == y.ino() => Vec::new(),
        (x, y) => vec![format!("{a} and {b} are not one file: {:?} / {:?}", x.map(|m| m.ino()), y.map(|m| m.ino()))],
    }
}

/// The hardlink-under-a-renamed-directory case: a write through one name after the directory
/// moved (an `overlay.redirect`) copies up every name as one file, `held`: with a reader of the
/// written name open during the write.
fn linked_under_renamed_dir(test: &str, held: bool) {
    if !require_root(test) {
        return;
    }
    let written = b"0123456789abcdefghi".to_vec();
    let write = |path: &str| {
        let w = Op::Write(s(path), written.clone());
        if held { Op::HoldOpen(s(path), Box::new(w)) } else { w }
    };
    // Looked up in both orders first: the name a copy-up starts from must not matter.
    let mut ops = vec![Op::Stat(s("a/c/c")), Op::Stat(s("a/c/e")), Op::Stat(s("x/z")), Op::Stat(s("x/y"))];
    ops.push(Op::Rename(s("a"), s("d/new1"), 0));
    ops.push(write("d/new1/c/c"));
    ops.extend(both_names("d/new1/c", &["c", "e"]));
    // Stat'ed through the other name while a writer is open (and a reader: its kernel inode
    // passes through to the lower file, so the object gets a new one).
    let reader = if held { "exec 3<k; " } else { "" };
    ops.push(Op::Sh(
        0,
        0,
        format!(
            "cd d/new1/k; {reader}cat l >/dev/null; exec 4>k; stat -c '%n %s %h' k l; echo 0123456789abcdefgh >&4; \
             stat -c '%n %s %h' k l; cat l k; exec 4>&-; stat -c '%n %s %h' k l"
        ),
    ));
    // The other name of the second file is in another renamed directory.
    ops.push(Op::Rename(s("b"), s("d/nb"), 0));
    ops.push(Op::Rename(s("x"), s("d/nx"), 0));
    ops.push(write("d/nx/z"));
    ops.extend(both_names("d/nx", &["y", "z"]));
    ops.extend(both_names("d/nb", &["f"]));
    ops.push(Op::Remount);
    ops.extend(both_names("d/new1/c", &["c", "e"]));
    ops.extend(both_names("d/nx", &["y", "z"]));
    ops.extend(both_names("d/nb", &["f"]));
    let upper = |u: &Path| {
        let mut p = one_upper_file(u, "d/new1/c/c", "d/new1/c/e");
        p.extend(one_upper_file(u, "d/nx/y", "d/nx/z"));
        p.extend(one_upper_file(u, "d/nx/y", "d/nb/f"));
        p
    };
    let problems =
        differential_with(&linked_under_dir_layers(), &ops, &Checks { upper: Some(&upper), ..Default::default() });
    assert!(problems.is_empty(), "{test}: {} disagreements:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn root_hardlinks_under_a_renamed_directory_stay_one_object_when_written() {
    linked_under_renamed_dir("root_hardlinks_under_a_renamed_directory_stay_one_object_when_written", false);
}

#[test]
fn root_hardlinks_under_a_renamed_directory_stay_one_object_with_a_reader_open() {
    linked_under_renamed_dir("root_hardlinks_under_a_renamed_directory_stay_one_object_with_a_reader_open", true);
}

/// `n` directory names of 99 bytes, joined: `n * 100 - 1` bytes.
fn chain(n: usize) -> String {
    vec!["d".repeat(99); n].join("/")
}

/// Runs `op` in the directory `dir` (reached one component at a time).
fn under(dir: &str, op: Op) -> Op {
    Op::Under(dir.to_string(), Box::new(op))
}

#[test]
fn root_paths_near_and_beyond_path_max_work_as_on_the_kernel() {
    // `a/CHAIN40` is 4001 bytes from the root: names of 93, 94 and 95 bytes in it end at
    // 4095, 4096 and 4097 bytes. `a/CHAIN41/f` is beyond PATH_MAX.
    let (near, deep) = (format!("a/{}", chain(40)), format!("a/{}", chain(41)));
    let layers = vec![vec![
        Entry::DeepFile(format!("{near}/g"), b"near".to_vec()),
        Entry::DeepFile(format!("{deep}/f"), b"deep lower".to_vec()),
        Entry::DeepFile(format!("{deep}/h"), b"to unlink".to_vec()),
    ]];
    let mut ops = vec![under(&near, Op::Read(s("g"))), under(&deep, Op::Read(s("f"))), under(&deep, Op::Stat(s("f")))];
    for n in 92..=96 {
        let name = "x".repeat(n);
        ops.push(under(&near, Op::Mkdir(name.clone(), 0o755)));
        ops.push(under(&near, Op::Stat(name.clone())));
        ops.push(under(&near, Op::Write(format!("{name}/new"), b"created".to_vec())));
        ops.push(under(&near, Op::Unlink(format!("{name}/new"))));
        ops.push(under(&near, Op::Rmdir(name.clone())));
        ops.push(under(&near, Op::Write(name.clone(), b"file".to_vec())));
        ops.push(under(&near, Op::Rename(name.clone(), format!("{name}.r"), 0)));
        ops.push(under(&near, Op::Unlink(format!("{name}.r"))));
    }
    // Copy-up of a file beyond PATH_MAX (with its parents), then of its metadata.
    ops.push(under(&deep, Op::Append(s("f"), b"+more".to_vec())));
    ops.push(under(&deep, Op::Chmod(s("g"), 0o600)));
    ops.push(under(&near, Op::Chmod(s("g"), 0o600)));
    ops.push(under(&deep, Op::Unlink(s("h"))));
    ops.push(under(&deep, Op::List(s(""))));
    // Deeper still: a tree of about 8 KiB below the root, made and partly removed.
    let mut dir = deep.clone();
    for _ in 0..40 {
        ops.push(under(&dir, Op::Mkdir("e".repeat(99), 0o700)));
        dir = format!("{dir}/{}", "e".repeat(99));
    }
    ops.push(under(&dir, Op::Write(s("bottom"), b"8k deep".to_vec())));
    ops.push(under(&dir, Op::Rename(s("bottom"), s("moved"), 0)));
    let parent = dir.rsplit_once('/').unwrap().0.to_string();
    ops.push(under(&parent, Op::Rmdir("e".repeat(99))));
    ops.push(under(&dir, Op::Unlink(s("moved"))));
    ops.push(under(&parent, Op::Rmdir("e".repeat(99))));
    // The whole deep tree moves (a redirect), and is used through its new name.
    ops.push(Op::Rename(s("a"), s("b"), 0));
    let moved = deep.replacen('a', "b", 1);
    ops.push(under(&moved, Op::Read(s("f"))));
    ops.push(under(&moved, Op::Write(s("f"), b"rewritten".to_vec())));
    ops.push(Op::Remount);
    ops.push(under(&moved, Op::Read(s("f"))));
    ops.push(under(&moved, Op::List(s(""))));
    ops.push(under(&near.replacen('a', "b", 1), Op::Read(s("g"))));
    check("root_paths_near_and_beyond_path_max_work_as_on_the_kernel", &layers, &ops);
}

#[test]
fn root_open_files_across_unlink_and_copy_up() {
    let ops = vec![
        Op::OpenUnlinked(s("d/low")),
        Op::Stat(s("d/low")),
        Op::Write(s("d/upper"), b"u".to_vec()),
        Op::OpenUnlinked(s("d/upper")),
        Op::ReadOldThenWrite(s("d/both")),
        Op::Read(s("d/both")),
    ];
    check("root_open_files_across_unlink_and_copy_up", &base(), &ops);
}

/// A default ACL (`system.posix_acl_default`) giving user 1234 and everyone rwx.
fn default_acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, id) in [(1u16, u32::MAX), (2, 1234), (4, u32::MAX), (0x10, u32::MAX), (0x20, u32::MAX)] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&7u16.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A shell script run as `uid` (and the same gid) in the mounted view.
fn sh(uid: u32, script: &str) -> Op {
    Op::Sh(uid, uid, script.to_string())
}

/// Layers with what permission checks look at: sticky, set-gid and public dirs, files of
/// several owners, a trusted xattr, a directory with a default ACL.
fn permission_layers() -> Vec<Vec<Entry>> {
    vec![
        vec![file("top", "t"), Entry::Dir("pub", 0o777)],
        vec![
            Entry::Dir("sticky", 0o1777),
            Entry::File(s("sticky/userfile"), b"u".to_vec(), 0o666),
            Entry::Owner(s("sticky/userfile"), 1000, 1000),
            Entry::Dir("sgid", 0o2777),
            Entry::Owner(s("sgid"), 0, 100),
            Entry::File(s("pub/shared"), b"s".to_vec(), 0o666),
            Entry::File(s("pub/mine"), b"m".to_vec(), 0o644),
            Entry::Owner(s("pub/mine"), 1000, 1000),
            file("ro", "r"),
            Entry::Xattr(s("ro"), s("trusted.t"), b"1".to_vec()),
            Entry::Xattr(s("ro"), s("user.u"), b"2".to_vec()),
            file("acld/gone", "g"),
            Entry::Xattr(s("acld"), s("system.posix_acl_default"), default_acl()),
            file("d/low", "low"),
        ],
    ]
}

#[test]
fn root_permission_checks_umask_and_default_acls_as_the_kernel_has_them() {
    let ops = vec![
        sh(0, "umask 002; touch u1; mkdir u2; mkfifo u3; stat -c '%n %a' u1 u2 u3"),
        sh(0, "umask 0; touch u4; mkdir u5; mkfifo u6; stat -c '%n %a' u4 u5 u6"),
        sh(0, "umask 077; touch u7; mkdir u8; stat -c '%n %a' u7 u8"),
        sh(1000, "umask 0; touch sgid/f; mkdir sgid/d; stat -c '%n %a %u:%g' sgid/f sgid/d"),
        sh(1000, "umask 022; touch pub/new; stat -c '%n %a %u:%g' pub/new"),
        sh(1000, "touch d/nope"),
        sh(1001, "rm sticky/userfile"),
        sh(1001, "mv sticky/userfile sticky/x"),
        sh(1000, "rm sticky/userfile && ls sticky"),
        sh(1000, "chmod 600 ro"),
        sh(1000, "chown 1000 pub/mine"),
        sh(1000, "chmod 2755 pub/mine; stat -c '%a' pub/mine"),
        sh(1001, "touch pub/shared && touch -d @5 pub/shared"),
        sh(1001, "touch -d @5 pub/mine"),
        sh(1000, "getfattr -m - ro"),
        sh(0, "getfattr -m - ro"),
        sh(1000, "getfattr -n trusted.t ro"),
        sh(1000, "mknod pub/wh c 0 0"),
        Op::MknodWhiteout(s("d/wh")),
        Op::Stat(s("d/wh")),
        sh(0, "n=$(printf '%0255d' 0); touch $n && ls && rm $n && mkdir $n && rmdir $n && echo ok"),
        sh(0, "n=$(printf '%0256d' 0); touch $n"),
        sh(0, "umask 077; touch acld/f; mkdir acld/s; stat -c '%n %a' acld/f acld/s"),
        sh(0, "getfattr -e hex -n system.posix_acl_access acld/f acld/s"),
        sh(0, "getfattr -e hex -n system.posix_acl_default acld/s"),
        // Over a whiteout the object is built in the work dir: the ACL must still be inherited.
        sh(0, "rm acld/gone; umask 077; touch acld/gone; stat -c '%n %a' acld/gone"),
        sh(0, "getfattr -e hex -n system.posix_acl_access acld/gone"),
        sh(
            0,
            &format!("setfattr -n system.posix_acl_default -v 0x{} pub; umask 077; mkdir pub/a", hex(&default_acl())),
        ),
        sh(0, "stat -c '%n %a' pub/a; getfattr -e hex -n system.posix_acl_default pub/a"),
        Op::UnlinkedMeta(s("d/low")),
        Op::UnlinkedMeta(s("top")),
    ];
    check("root_permission_checks_umask_and_default_acls_as_the_kernel_has_them", &permission_layers(), &ops);
}

/// Set-user-ID and set-group-ID files of several owners, and one with a file capability.
fn privilege_layers() -> Vec<Vec<Entry>> {
    let mut low = vec![Entry::Dir("s", 0o777)];
    for (name, mode) in
        [("w1", 0o4777), ("w2", 0o2777), ("w3", 0o2767), ("t1", 0o4777), ("t2", 0o6777), ("r1", 0o6777), ("p1", 0o4777)]
    {
        low.push(Entry::File(format!("s/{name}"), b"data".to_vec(), mode));
    }
    low.push(Entry::File(s("s/c1"), b"c".to_vec(), 0o6755));
    low.push(Entry::Owner(s("s/c1"), 1000, 1000));
    low.push(Entry::File(s("s/cap"), b"c".to_vec(), 0o755));
    // cap_net_raw, permitted and effective (VFS_CAP_REVISION_2).
    let cap = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    low.push(Entry::Xattr(s("s/cap"), s("security.capability"), cap));
    vec![vec![file("top", "t")], low]
}

#[test]
fn root_writes_truncates_and_chowns_clear_suid_and_sgid_as_the_kernel_does() {
    let ops = vec![
        sh(1000, "echo x >> s/w1; echo x >> s/w2; echo x >> s/w3; stat -c '%n %a' s/w1 s/w2 s/w3"),
        sh(1000, "truncate -s 1 s/t1; : > s/t2; stat -c '%n %a %s' s/t1 s/t2"),
        sh(0, "echo x >> s/r1; truncate -s 2 s/r1; stat -c '%n %a' s/r1"),
        sh(0, "chown 1001 s/c1; stat -c '%n %a %u' s/c1"),
        sh(1000, "umask 0; touch s/own; chmod 4755 s/own; echo x >> s/own; stat -c '%n %a' s/own"),
        sh(1000, "umask 0; touch s/own2; chmod 2775 s/own2; truncate -s 9 s/own2; stat -c '%n %a' s/own2"),
        sh(0, "getfattr -e hex -n security.capability s/cap"),
        sh(0, "echo x >> s/cap; getfattr -e hex -n security.capability s/cap"),
        // Through a file opened by root, written by a user.
        sh(0, "chmod 4777 s/w1; exec 3>>s/w1; setpriv --reuid=1000 sh -c 'echo y >&3'; stat -c '%n %a' s/w1"),
        // Opened for writing while a reader passes through to the same (upper) file.
        sh(0, "touch s/p1; exec 4<s/p1; setpriv --reuid=1000 sh -c 'echo z >> s/p1'; cat <&4; stat -c '%n %a %s' s/p1"),
        // Through a file opened before the bit was set.
        sh(
            0,
            "chmod 777 s/w2; exec 3>>s/w2; chmod 4777 s/w2; setpriv --reuid=1000 sh -c 'echo y >&3'; stat -c '%n %a' s/w2",
        ),
    ];
    check("root_writes_truncates_and_chowns_clear_suid_and_sgid_as_the_kernel_does", &privilege_layers(), &ops);
}

#[test]
fn root_times_change_where_the_kernel_changes_them() {
    let ch = |paths: &[&str], op: Op| Op::Changes(paths.iter().map(|p| s(p)).collect(), Box::new(op));
    let ops = vec![
        ch(&["d", ""], Op::Write(s("d/n1"), b"1".to_vec())),
        ch(&["d", "d/top"], Op::Append(s("d/top"), b"+".to_vec())),
        ch(&["d", "d/both"], Op::Write(s("d/both"), b"w".to_vec())),
        ch(&["d", ""], Op::Mkdir(s("d/nd"), 0o755)),
        ch(&["d", "d/nd"], Op::Mkdir(s("d/nd"), 0o755)),
        ch(&["d"], Op::Mkfifo(s("d/nf"))),
        ch(&["d"], Op::Symlink(s("x"), s("d/ns"))),
        ch(&["d", "d/low", "deep"], Op::Link(s("d/low"), s("deep/nl"))),
        ch(&["d", "d/low"], Op::Link(s("d/low"), s("d/n1"))),
        ch(&["d", "hl/two", "hl"], Op::Unlink(s("hl/one"))),
        ch(&["d", ""], Op::Rmdir(s("d/nd"))),
        ch(&["d", "d/exe"], Op::Rename(s("d/exe"), s("d/exe2"), 0)),
        ch(&["d", "deep", "deep/x"], Op::Rename(s("d/exe2"), s("deep/x"), 0)),
        ch(&["", "deep", "deep/e"], Op::Rename(s("emptydir"), s("deep/e"), 0)),
        ch(&["", "deep/a", "deep/a/b"], Op::Rename(s("deep/a/b"), s("deep/a/b2"), 0)),
        ch(&["", "opq", "opq2"], Op::Rename(s("opq"), s("opq2"), 2)),
        ch(&["d", "d/top"], Op::Chmod(s("d/top"), 0o600)),
        ch(&["d/top"], Op::Chmod(s("d/top"), 0o600)),
        ch(&["d/top"], Op::Sh(0, 0, s("perl -e 'chown(-1, -1, \"d/top\") or die \"$!\"'"))),
        ch(&["deep/a", "deep/a/b2", "deep"], Op::Utimes(s("deep/a/b2"), 3)),
        ch(&["deep/a/b2/c"], Op::Truncate(s("deep/a/b2/c/file"), 1)),
        ch(&["deep/a/b2/c/file"], Op::Truncate(s("deep/a/b2/c/file"), 1)),
        ch(&["d/both", "d"], Op::SetXattr(s("d/both"), s("user.t"), b"1".to_vec())),
        ch(&["d/both"], Op::RemoveXattr(s("d/both"), s("user.none"))),
        ch(&["dev", "dev/null"], Op::Chown(s("dev/null"), 1, 1)),
    ];
    check("root_times_change_where_the_kernel_changes_them", &base(), &ops);
}

/// A random layer set and operation sequence, reproducible from `seed`.
fn random_case(seed: u64) -> (Vec<Vec<Entry>>, Vec<Op>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["a", "b", "c"];
    let mut paths: Vec<String> = Vec::new();
    for x in names {
        paths.push(x.to_string());
        for y in names {
            paths.push(format!("{x}/{y}"));
            for z in ["a", "b"] {
                paths.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    let nlayers = rng.random_range(1..=3);
    let mut layers = Vec::new();
    for _ in 0..nlayers {
        let mut entries = Vec::new();
        let mut used: Vec<String> = Vec::new();
        for _ in 0..rng.random_range(2..10) {
            let p = paths[rng.random_range(0..paths.len())].clone();
            // A path may not sit under an earlier non-directory of the same layer.
            if used.iter().any(|u| p == *u || p.starts_with(&format!("{u}/")) || u.starts_with(&format!("{p}/"))) {
                continue;
            }
            used.push(p.clone());
            let entry = match rng.random_range(0..14) {
                0..=3 => file(&p, &format!("{p}@{seed}")),
                4 => Entry::Whiteout(p),
                5 => Entry::Symlink(p, "a".into()),
                6 => Entry::Opaque(p),
                7 => Entry::WhFile(p),
                8 => Entry::OpaqueFile(p),
                9 => {
                    entries.push(file(&p, "linked"));
                    used.push(format!("{p}.l"));
                    Entry::Hardlink(format!("{p}.l"), p)
                }
                10 => {
                    entries.push(file(&p, "x"));
                    Entry::Xattr(p, "user.x".into(), b"1".to_vec())
                }
                _ => Entry::File(format!("{p}/f"), b"inner".to_vec(), 0o640),
            };
            entries.push(entry);
        }
        layers.push(entries);
    }
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(10..40) {
        let p = paths[rng.random_range(0..paths.len())].clone();
        let q = paths[rng.random_range(0..paths.len())].clone();
        ops.push(match rng.random_range(0..30) {
            21 if rng.random_range(0..3) == 0 => Op::Remount,
            21 => Op::SeekDir(p),
            22 => Op::Mknod(p, None),
            23 => Op::MknodWhiteout(p),
            24 => Op::ListXattr(p),
            25 => Op::OpenUnlinked(p),
            26 => Op::UnlinkedMeta(p),
            27 => Op::ReadOldThenWrite(p),
            28 => Op::Sh(1000, 1000, format!("umask 002; echo u >> {p}; mkdir {q}; stat -c '%a %u:%g' {p} {q}")),
            29 => Op::Sh(0, 0, format!("umask 027; mkdir {p}/n && touch {p}/n/f; stat -c '%a' {p}/n {p}/n/f")),
            17 => Op::Utimes(p, 1_000_000),
            18 => Op::RemoveXattr(p, "user.x".into()),
            19 => Op::GetXattr(p, "user.x".into()),
            20 => Op::Readlink(p),
            0 => Op::Write(p, format!("w{seed}").into_bytes()),
            1 => Op::Append(p, b"+".to_vec()),
            2 => Op::Read(p),
            3 => Op::Stat(p),
            4 => Op::List(p),
            5 => Op::Mkdir(p, 0o755),
            6 => Op::Rmdir(p),
            7 => Op::Unlink(p),
            8 => Op::Rename(p, q, [0, 0, 1, 2][rng.random_range(0..4)]),
            9 => Op::Link(p, q),
            10 => Op::Symlink("x".into(), p),
            11 => Op::Chmod(p, [0o700, 0o777, 0o1777, 0o2755, 0o600][rng.random_range(0..5)]),
            12 => Op::Truncate(p, 1),
            13 => Op::SetXattr(p, "user.r".into(), b"1".to_vec()),
            14 => Op::List(String::new()),
            15 => Op::Chown(p, 1000, 1000),
            _ => Op::Mkfifo(p),
        });
    }
    (layers, ops)
}

/// Paths of the layers of [`linked_case`]: three levels of `a`, `b`, `c`.
fn layer_paths() -> Vec<String> {
    tree_paths(&["a", "b", "c"])
}

/// Every path of up to three levels made of `names` (the third level of the first two and
/// the last one only).
fn tree_paths(names: &[&str]) -> Vec<String> {
    let third: Vec<&str> = names.iter().take(2).chain(names.last()).copied().collect();
    let mut paths = Vec::new();
    for x in names {
        paths.push(x.to_string());
        for y in names {
            paths.push(format!("{x}/{y}"));
            for z in &third {
                paths.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    paths
}

/// A random layer set and operation sequence that moves directories (redirects) around
/// files with several names, possibly in other directories, while writing, truncating and
/// holding files open, reproducible from `seed`. Operations also use the name `n`, which no
/// layer has: renames to it succeed, and what moved there is used afterwards.
fn linked_case(seed: u64) -> (Vec<Vec<Entry>>, Vec<Op>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let pool = layer_paths();
    let pick = |rng: &mut StdRng, from: &[String]| from[rng.random_range(0..from.len())].clone();
    let mut layers = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        let mut entries = Vec::new();
        let mut used: Vec<String> = Vec::new();
        let free = |used: &[String], p: &str| {
            !used.iter().any(|u| p == u || p.starts_with(&format!("{u}/")) || u.starts_with(&format!("{p}/")))
        };
        for _ in 0..rng.random_range(3..10) {
            let p = pick(&mut rng, &pool);
            if !free(&used, &p) {
                continue;
            }
            used.push(p.clone());
            match rng.random_range(0..10) {
                0..=2 => entries.push(file(&p, &format!("{p}@{seed}"))),
                3..=6 => {
                    entries.push(file(&p, &format!("linked {p}@{seed}")));
                    for _ in 0..rng.random_range(1..=2) {
                        let q = pick(&mut rng, &pool);
                        if free(&used, &q) {
                            used.push(q.clone());
                            entries.push(Entry::Hardlink(q, p.clone()));
                        }
                    }
                }
                7 => entries.push(Entry::Whiteout(p)),
                8 => entries.push(Entry::Opaque(p)),
                _ => entries.push(Entry::File(format!("{p}/f"), b"inner".to_vec(), 0o640)),
            }
        }
        layers.push(entries);
    }
    let paths = tree_paths(&["a", "b", "c", "n"]);
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(15..45) {
        let (p, q) = (pick(&mut rng, &paths), pick(&mut rng, &paths));
        let change = |rng: &mut StdRng, p: String, q: String| match rng.random_range(0..8) {
            0 | 1 => Op::Write(p, format!("w{seed}").into_bytes()),
            2 => Op::Append(p, b"+".to_vec()),
            3 => Op::Truncate(p, rng.random_range(0..4)),
            4 => Op::Rename(p, q, [0, 0, 1, 2][rng.random_range(0..4)]),
            5 => Op::Link(p, q),
            6 => Op::Unlink(p),
            _ => Op::Chmod(p, 0o600),
        };
        ops.push(match rng.random_range(0..20) {
            0..=5 => change(&mut rng, p, q),
            6 | 7 => {
                let inner = change(&mut rng, p.clone(), q);
                let held = if rng.random_range(0..2) == 0 { p } else { pick(&mut rng, &paths) };
                Op::HoldOpen(held, Box::new(inner))
            }
            // A directory moves, often to a name no layer has.
            8..=10 => {
                let to = if rng.random_range(0..3) == 0 { q } else { format!("{}/n", pick(&mut rng, &paths[..21])) };
                Op::Rename(pick(&mut rng, &paths[..21]), to, 0)
            }
            11 | 12 => Op::Read(p),
            13 | 14 => Op::Stat(p),
            15 => Op::List(p),
            16 => Op::Mkdir(p, 0o755),
            17 => Op::OpenUnlinked(p),
            18 => Op::ReadOldThenWrite(p),
            _ => Op::Remount,
        });
    }
    (layers, ops)
}

/// The kinds of random cases.
#[derive(Clone, Copy, Debug)]
enum Cases {
    /// [`random_case`].
    General,
    /// [`linked_case`].
    Linked,
}

impl Cases {
    /// The layers and operations of `seed`.
    fn make(self, seed: u64) -> (Vec<Vec<Entry>>, Vec<Op>) {
        match self {
            Cases::General => random_case(seed),
            Cases::Linked => linked_case(seed),
        }
    }

    /// What they are compared by.
    fn checks(self) -> Checks<'static> {
        Checks { any_dir_nlink: matches!(self, Cases::Linked), ..Default::default() }
    }
}

fn random_seeds(test: &str, seeds: std::ops::Range<u64>) {
    seeds_of(test, Cases::General, seeds)
}

fn seeds_of(test: &str, cases: Cases, seeds: std::ops::Range<u64>) {
    if !require_root(test) {
        return;
    }
    let mut failures = Vec::new();
    for seed in seeds {
        let (layers, ops) = cases.make(seed);
        let problems = differential_with(&layers, &ops, &cases.checks());
        if !problems.is_empty() {
            failures.push(format!("seed {seed}:\n  layers {layers:?}\n  {}", problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{test}: {} seeds disagree:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn root_random_operation_sequences_seeds_0_to_150() {
    random_seeds("root_random_operation_sequences_seeds_0_to_150", 0..150);
}

#[test]
fn root_random_operation_sequences_seeds_150_to_300() {
    random_seeds("root_random_operation_sequences_seeds_150_to_300", 150..300);
}

#[test]
fn root_random_operation_sequences_seeds_300_to_450() {
    random_seeds("root_random_operation_sequences_seeds_300_to_450", 300..450);
}

#[test]
fn root_random_directory_renames_with_hardlinks_writes_and_open_files_seeds_0_to_150() {
    let test = "root_random_directory_renames_with_hardlinks_writes_and_open_files_seeds_0_to_150";
    seeds_of(test, Cases::Linked, 0..150);
}

/// Replays one seed with its operations printed: `STRATA_SEED=N cargo test --test union replay -- --nocapture`;
/// or runs a range of seeds beyond the ones CI runs: `STRATA_SEED=1000..5000`. `STRATA_CASES=linked`
/// takes the cases of directory renames with hardlinks instead of the general ones.
#[test]
fn replay_one_seed_from_env() {
    let Ok(seed) = std::env::var("STRATA_SEED") else { return };
    let cases = match std::env::var("STRATA_CASES").as_deref() {
        Ok("linked") => Cases::Linked,
        _ => Cases::General,
    };
    if let Some((a, b)) = seed.split_once("..") {
        let range =
            a.parse().expect("STRATA_SEED=A..B with numbers")..b.parse().expect("STRATA_SEED=A..B with numbers");
        return seeds_of("replay_one_seed_from_env", cases, range);
    }
    let seed: u64 = seed.parse().expect("STRATA_SEED must be a number");
    let (layers, ops) = cases.make(seed);
    eprintln!("layers: {layers:#?}\nops: {ops:#?}");
    let problems = differential_with(&layers, &ops, &cases.checks());
    assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n"));
}
