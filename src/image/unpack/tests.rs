//! Unit tests of layer unpacking on real temp dirs, with tars built here (raw headers where the
//! `tar` crate's builder would refuse a hostile name).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::{EntryType, Header};

use super::*;

/// One tar entry to build.
pub struct E<'a> {
    pub name: &'a [u8],
    pub kind: EntryType,
    pub data: &'a [u8],
    pub link: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub pax: Vec<(&'a str, &'a [u8])>,
}

pub fn e<'a>(name: &'a str, kind: EntryType) -> E<'a> {
    let mode = if kind.is_dir() { 0o755 } else { 0o644 };
    E { name: name.as_bytes(), kind, data: b"", link: b"", mode, uid: 0, pax: Vec::new() }
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E { data, ..e(name, EntryType::Regular) }
}

pub fn link<'a>(name: &'a str, kind: EntryType, target: &'a str) -> E<'a> {
    E { link: target.as_bytes(), ..e(name, kind) }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// Builds a tar; names and link targets are written into the header verbatim (PAX records
/// carry long ones), so hostile names reach the unpacker as they are.
pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for en in entries {
        let mut pax: Vec<u8> = en.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        if en.name.len() > 99 {
            pax.extend(pax_record("path", en.name));
        }
        if !pax.is_empty() {
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_cksum();
            b.append(&h, &pax[..]).unwrap();
        }
        let mut h = Header::new_ustar();
        let n = en.name.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&en.name[..n]);
        h.as_old_mut().linkname[..en.link.len()].copy_from_slice(en.link);
        h.set_entry_type(en.kind);
        h.set_mode(en.mode);
        h.set_uid(en.uid);
        h.set_gid(en.uid);
        h.set_mtime(1_700_000_000);
        h.set_size(en.data.len() as u64);
        h.set_cksum();
        b.append(&h, en.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn unpack_into(dir: &Path, tar: &[u8]) -> Result<Unpacked> {
    let root = File::open(dir).unwrap();
    unpack(tar, root.as_fd(), Options::for_current_user())
}

fn is_root() -> bool {
    crate::image::owners::is_privileged()
}

#[test]
fn creates_every_kind_of_entry_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("deep/{}/ünïcödé-{}", "d".repeat(80), "n".repeat(60));
    let tar = tar_of(&[
        E { mode: 0o700, ..e("./", EntryType::Directory) },
        E { mode: 0o4755, uid: 1000, ..file("bin/tool", b"#!/bin/sh\n") },
        link("bin/abs", EntryType::Symlink, "/etc/../bin/tool"),
        link("bin/rel", EntryType::Symlink, "tool"),
        link("bin/hard", EntryType::Link, "./bin/tool"),
        E { mode: 0o1777, ..e("tmp/", EntryType::Directory) },
        file(&long, b"long"),
        E { pax: vec![("SCHILY.xattr.user.fixture", b"v1")], ..file("x", b"") },
        e("fifo", EntryType::Fifo),
    ]);
    let got = unpack_into(dir.path(), &tar).unwrap();
    assert_eq!(got.entries, 9);
    let p = dir.path();
    let tool = fs_md(&p.join("bin/tool"));
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(fs_md(&p.join("bin/hard")).ino(), tool.ino());
    assert_eq!(std::fs::read_link(p.join("bin/abs")).unwrap(), Path::new("/etc/../bin/tool"));
    assert_eq!(std::fs::read_link(p.join("bin/rel")).unwrap(), Path::new("tool"));
    assert_eq!(fs_md(&p.join("bin")).mode() & 0o7777, 0o755, "implicit parents are 0755");
    assert_eq!(fs_md(&p.join("tmp")).mode() & 0o7777, 0o1777);
    assert_eq!(fs_md(p).mode() & 0o7777, 0o700, "the ./ entry sets the layer root");
    assert_eq!(std::fs::read(p.join(&long)).unwrap(), b"long");
    assert!(fs_md(&p.join("fifo")).file_type().is_fifo());
    let root = File::open(p).unwrap();
    let v = xattr::get(root.as_fd(), Some(OsStr::new("x")), OsStr::new("user.fixture")).unwrap();
    assert_eq!(v.as_deref(), Some(&b"v1"[..]));
    if is_root() {
        assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    } else {
        let bin = File::open(p.join("bin")).unwrap();
        let owner = xattr::get(bin.as_fd(), Some(OsStr::new("tool")), OsStr::new(OWNER_XATTR)).unwrap();
        assert_eq!(owner.as_deref(), Some(&b"1000:1000"[..]), "rootless keeps the owner it cannot set");
    }
}

fn fs_md(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap()
}

#[test]
fn markers_become_the_upper_format_whatever_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        file("d/.wh.gone", b""),
        file("d/.wh.replaced", b""),
        file(".wh.dir-again", b""),
        e("dir-again/", EntryType::Directory),
        file("dir-again/inner", b"i"),
        file("d/replaced", b"new"),
        file("o/kept", b"k"),
        file("o/.wh..wh..opq", b""),
        file("w/x/y/.wh.deep", b""),
        file("d/.wh..wh.plnk", b""),
    ]);
    unpack_into(dir.path(), &tar).unwrap();
    let p = dir.path();
    let root = File::open(p).unwrap();
    let opaque = |rel: &str| {
        let d = File::open(p.join(rel)).unwrap();
        let ns = Options::for_current_user().ns().name("opaque");
        xattr::get(d.as_fd(), None, OsStr::new(&ns)).unwrap().as_deref() == Some(&b"y"[..])
            || p.join(rel).join(OPAQUE_MARKER).exists()
    };
    let gone = fs_md(&p.join("d/gone"));
    if is_root() {
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    }
    assert_eq!(std::fs::read(p.join("d/replaced")).unwrap(), b"new");
    assert!(opaque("dir-again"), "a whited-out name this layer re-creates as a dir is opaque");
    assert_eq!(std::fs::read(p.join("dir-again/inner")).unwrap(), b"i");
    assert!(opaque("o"));
    assert_eq!(std::fs::read(p.join("o/kept")).unwrap(), b"k", "the layer's own entries stay");
    assert!(fd::try_stat_at(root.as_fd(), OsStr::new("w")).unwrap().is_some(), "parents of markers are made");
    assert!(!p.join("d/.wh..wh.plnk").exists());
    assert!(!opaque("d"));
}

#[test]
fn refuses_names_that_leave_the_layer() {
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().to_str().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tar_of(&[file("../escape", b"x")]), ".."),
        (tar_of(&[file("a/../../escape", b"x")]), ".."),
        (tar_of(&[file("/abs", b"x")]), "absolute"),
        (tar_of(&[link("l", EntryType::Symlink, out), file("l/escape", b"x")]), "symlink"),
        (tar_of(&[link("l", EntryType::Symlink, out), link("l/escape", EntryType::Symlink, "x")]), "symlink"),
        (tar_of(&[link("h", EntryType::Link, "/etc/passwd")]), "absolute"),
        (tar_of(&[link("h", EntryType::Link, "../../etc/passwd")]), ".."),
        (tar_of(&[link("l", EntryType::Symlink, "/etc"), link("h", EntryType::Link, "l/passwd")]), "symlink"),
        (tar_of(&[link("h", EntryType::Link, "missing")]), "earlier entry"),
        (tar_of(&[file("a/.wh.", b"")]), "whiteout"),
        (tar_of(&[file("a/.wh..", b"")]), "whiteout"),
        (tar_of(&[file("f", b"x"), file("f/g", b"x")]), "not a directory"),
    ];
    for (i, (tar, why)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_into(dir.path(), tar).expect_err(&format!("case {i} must fail"));
        assert!(err.to_string().contains(why), "case {i}: {err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "case {i} wrote outside");
    }
}

#[test]
fn later_entries_replace_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        link("a", EntryType::Symlink, "/etc"),
        file("a", b"now a file"),
        file("d/x", b"x"),
        file("d", b"now a file too"),
        e("e/", EntryType::Directory),
        e("e/sub/", EntryType::Directory),
        file("e", b"a dir with a recorded mode became a file"),
        E { mode: 0o700, ..e("k/", EntryType::Directory) },
        file("k/in", b"in"),
        E { mode: 0o750, ..e("k/", EntryType::Directory) },
    ]);
    unpack_into(dir.path(), &tar).unwrap();
    let p = dir.path();
    assert_eq!(std::fs::read(p.join("a")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(p.join("d")).unwrap(), b"now a file too");
    assert!(p.join("e").is_file());
    assert_eq!(std::fs::read(p.join("k/in")).unwrap(), b"in");
    assert_eq!(fs_md(&p.join("k")).permissions().mode() & 0o7777, 0o750);
}

#[test]
fn a_replaced_parent_dir_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        file("d/x", b"x"),
        file("d", b"a file now"),
        e("d/", EntryType::Directory),
        file("d/y", b"y"),
        file("s/x", b"x"),
        link("s", EntryType::Symlink, "/tmp"),
        file("s/escape", b"no"),
    ]);
    let err = unpack_into(dir.path(), &tar).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    let p = dir.path();
    assert_eq!(std::fs::read(p.join("d/y")).unwrap(), b"y");
    assert!(!p.join("d/x").exists());
    assert!(!Path::new("/tmp/escape").exists());
}

#[test]
fn a_truncated_tar_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[file("big", &[7u8; 4096])]);
    let err = unpack_into(dir.path(), &tar[..1024]).unwrap_err();
    assert!(matches!(err, UnpackError::Read(_)), "{err}");
}

#[test]
fn parses_pax_times() {
    assert_eq!(parse_pax_time("1700000000.5"), Some(Timespec { tv_sec: 1_700_000_000, tv_nsec: 500_000_000 }));
    assert_eq!(parse_pax_time("12"), Some(Timespec { tv_sec: 12, tv_nsec: 0 }));
    assert_eq!(parse_pax_time("x"), None);
}

#[test]
fn blank_owner_fields_are_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_mtime(1);
    b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    unpack_into(dir.path(), &tar).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"hi");
}
