//! Unit tests of the union core on real temp dirs, calling [`Overlay`] directly (no mount).

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, XattrFlags};

use super::create::NewObject;
use super::inode::ROOT;
use super::layers::{Stack, StackSpec};
use super::{Config, Ctx, Errno, FaultPoint, Overlay};

/// A temp dir with `upper`, `work` and lower dirs `l0` (top) .. `lN`.
struct Fixture {
    dir: tempfile::TempDir,
    lowers: usize,
}

impl Fixture {
    fn new(lowers: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for d in ["upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        for i in 0..lowers {
            std::fs::create_dir(dir.path().join(format!("l{i}"))).unwrap();
        }
        Fixture { dir, lowers }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn file(&self, rel: &str, content: &str) {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn whiteout(&self, rel: &str) {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, &p, FileType::CharacterDevice, 0.into(), 0).unwrap();
    }

    fn overlay(&self) -> Overlay {
        let spec = StackSpec {
            lowers: (0..self.lowers).map(|i| self.p(&format!("l{i}"))).collect(),
            upper: Some(self.p("upper")),
            work: Some(self.p("work")),
            userxattr: !rustix::process::geteuid().is_root(),
            volatile: false,
        };
        Overlay::new(Stack::open(&spec).unwrap(), Config::default()).unwrap()
    }

    fn opaque_key(&self) -> &'static str {
        if rustix::process::geteuid().is_root() { "trusted.overlay.opaque" } else { "user.overlay.opaque" }
    }
}

/// What READDIR from offset 0 lists: `.`, `..`, then the merged names.
fn listing(ov: &Overlay, ino: u64) -> Vec<super::readdir::DirEntry> {
    ov.readdir(ino, 0).unwrap().0.entries.clone()
}

fn names(ov: &Overlay, ino: u64) -> Vec<String> {
    let mut v: Vec<String> = listing(ov, ino).into_iter().map(|e| e.name.to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn ino_of(ov: &Overlay, path: &str) -> Result<u64, Errno> {
    let mut ino = ROOT;
    for c in Path::new(path).iter() {
        ino = ov.lookup(ino, c)?.0.ino;
    }
    Ok(ino)
}

fn read(ov: &Overlay, path: &str) -> String {
    let fh = ov.open(ino_of(ov, path).unwrap(), libc::O_RDONLY, None).unwrap();
    let data = ov.read(fh, 0, 1 << 20).unwrap();
    ov.release(fh);
    String::from_utf8(data).unwrap()
}

/// Nothing in the work dir but the shared whiteout new whiteouts are linked to.
fn work_is_clean(f: &Fixture) -> bool {
    let shared = std::ffi::OsStr::new(super::whiteout::SHARED_WHITEOUT);
    std::fs::read_dir(f.p("work/work")).unwrap().all(|e| e.unwrap().file_name() == shared)
}

#[test]
fn lookup_takes_the_top_layer_and_every_whiteout_form_hides() {
    let f = Fixture::new(2);
    f.file("l1/d/a", "low");
    f.file("l0/d/a", "high");
    f.file("l1/d/dev", "hidden by a device whiteout");
    f.whiteout("l0/d/dev");
    f.file("l1/d/aufs", "hidden by .wh.");
    f.file("l0/d/.wh.aufs", "");
    f.file("l1/d/xw", "hidden by an xattr whiteout");
    f.file("l0/d/xw", "");
    let ns = if rustix::process::geteuid().is_root() { "trusted" } else { "user" };
    rustix::fs::lsetxattr(f.p("l0/d"), format!("{ns}.overlay.opaque").as_str(), b"x", XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(f.p("l0/d/xw"), format!("{ns}.overlay.whiteout").as_str(), b"", XattrFlags::empty()).unwrap();
    f.file("upper/d/.wh.b", "");
    f.file("l1/d/b", "hidden from upper");
    let ov = f.overlay();
    assert_eq!(read(&ov, "d/a"), "high");
    for gone in ["d/dev", "d/aufs", "d/xw", "d/b", "d/.wh.aufs"] {
        assert_eq!(ino_of(&ov, gone), Err(Errno::NOENT), "{gone}");
    }
    let d = ino_of(&ov, "d").unwrap();
    assert_eq!(names(&ov, d), [".", "..", "a"]);
}

#[test]
fn opaque_dirs_in_every_form_stop_the_merge() {
    let f = Fixture::new(2);
    f.file("l1/x/old", "");
    f.file("l0/x/new", "");
    rustix::fs::lsetxattr(f.p("l0/x"), f.opaque_key(), b"y", XattrFlags::empty()).unwrap();
    f.file("l1/y/old", "");
    f.file("l0/y/new", "");
    f.file("l0/y/.wh..wh..opq", "");
    f.file("l1/z/old", "");
    f.file("l0/z", "a file ends the merge of a directory");
    f.file("l1/w/old", "");
    f.file("l0/w/new", "");
    f.file("l0/.wh.w", "");
    let ov = f.overlay();
    for dir in ["x", "y", "w"] {
        let ino = ino_of(&ov, dir).unwrap();
        assert_eq!(names(&ov, ino), [".", "..", "new"], "{dir}");
    }
    assert!(ov.lookup(ino_of(&ov, "z").unwrap(), OsStr::new("old")).is_err());
    assert_eq!(read(&ov, "z"), "a file ends the merge of a directory");
}

#[test]
fn readdir_merges_names_once_and_hides_markers() {
    let f = Fixture::new(2);
    for (layer, name) in [("l1", "a"), ("l1", "b"), ("l0", "b"), ("l0", "c"), ("upper", "d"), ("upper", "a")] {
        f.file(&format!("{layer}/dir/{name}"), layer);
    }
    f.file("l0/dir/.wh.a", "");
    f.whiteout("upper/dir/c");
    let ov = f.overlay();
    let dir = ino_of(&ov, "dir").unwrap();
    // `a` in upper survives the `.wh.a` of a lower layer; `c` is whited out by upper.
    assert_eq!(names(&ov, dir), [".", "..", "a", "b", "d"]);
    assert_eq!(read(&ov, "dir/a"), "upper");
    let listed: Vec<_> = listing(&ov, dir).into_iter().filter(|e| e.name == "b").collect();
    assert_eq!(listed[0].ino, ino_of(&ov, "dir/b").unwrap(), "readdir d_ino equals st_ino");
}

#[test]
fn removing_a_lower_name_leaves_a_device_whiteout_and_creating_replaces_it() {
    let f = Fixture::new(1);
    f.file("l0/d/f", "lower");
    f.file("l0/d/sub/x", "");
    let ov = f.overlay();
    let d = ino_of(&ov, "d").unwrap();
    ov.unlink(d, OsStr::new("f")).unwrap();
    let st = std::fs::symlink_metadata(f.p("upper/d/f")).unwrap();
    assert_eq!((st.mode() & libc::S_IFMT, st.rdev()), (libc::S_IFCHR, 0));
    assert_eq!(ino_of(&ov, "d/f"), Err(Errno::NOENT));
    ov.create(&Ctx::ROOT, d, OsStr::new("f"), NewObject::File { mode: 0o640, flags: libc::O_RDWR }).unwrap();
    assert!(std::fs::symlink_metadata(f.p("upper/d/f")).unwrap().is_file());
    // A directory made over a whiteout is opaque: the old lower content stays hidden.
    assert_eq!(ov.rmdir(d, OsStr::new("sub")), Err(Errno::NOTEMPTY));
    ov.unlink(ino_of(&ov, "d/sub").unwrap(), OsStr::new("x")).unwrap();
    ov.rmdir(d, OsStr::new("sub")).unwrap();
    ov.create(&Ctx::ROOT, d, OsStr::new("sub"), NewObject::Dir { mode: 0o700 }).unwrap();
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(f.p("upper/d/sub"), f.opaque_key(), &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    assert_eq!(std::fs::metadata(f.p("upper/d/sub")).unwrap().permissions().mode() & 0o7777, 0o700);
    assert_eq!(names(&ov, ino_of(&ov, "d/sub").unwrap()), [".", ".."]);
    assert!(work_is_clean(&f));
}

#[test]
fn copy_up_keeps_data_owner_mode_xattrs_times_and_inode_number() {
    let f = Fixture::new(1);
    f.file("l0/a/b/file", "0123456789");
    std::fs::set_permissions(f.p("l0/a/b"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(f.p("l0/a/b/file"), std::fs::Permissions::from_mode(0o604)).unwrap();
    rustix::fs::lsetxattr(f.p("l0/a/b/file"), "user.k", b"v", XattrFlags::empty()).unwrap();
    let t = rustix::fs::Timespec { tv_sec: 1_000_000, tv_nsec: 5 };
    let ts = rustix::fs::Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(rustix::fs::CWD, f.p("l0/a/b/file"), &ts, rustix::fs::AtFlags::empty()).unwrap();
    let ov = f.overlay();
    let ino = ino_of(&ov, "a/b/file").unwrap();
    let fh = ov.open(ino, libc::O_RDWR, None).unwrap();
    let up = std::fs::symlink_metadata(f.p("upper/a/b/file")).unwrap();
    assert_eq!(std::fs::read(f.p("upper/a/b/file")).unwrap(), b"0123456789");
    assert_eq!((up.mode() & 0o7777, up.mtime(), up.mtime_nsec()), (0o604, 1_000_000, 5));
    assert_eq!(std::fs::metadata(f.p("upper/a/b")).unwrap().permissions().mode() & 0o7777, 0o700);
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(f.p("upper/a/b/file"), "user.k", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"v");
    ov.write(fh, 10, b"!", None).unwrap();
    ov.release(fh);
    assert_eq!(std::fs::read(f.p("l0/a/b/file")).unwrap(), b"0123456789", "the lower file is never written");
    assert_eq!(ov.getattr(ino, None).unwrap().ino, ino, "st_ino is the same after copy-up");
    drop(ov);
    let again = f.overlay();
    assert_eq!(ino_of(&again, "a/b/file").unwrap(), ino, "and after a remount");
    assert!(work_is_clean(&f));
}

#[test]
fn a_copy_up_that_fails_midway_leaves_upper_unchanged_and_work_clean() {
    for point in [FaultPoint::MidData, FaultPoint::BeforeRename] {
        let f = Fixture::new(1);
        f.file("l0/d/file", &"x".repeat(100_000));
        let ov = f.overlay();
        let ino = ino_of(&ov, "d/file").unwrap();
        ov.inject_fault(point);
        assert_eq!(ov.open(ino, libc::O_WRONLY, None), Err(Errno::IO), "{point:?}");
        assert!(!f.p("upper/d/file").exists(), "{point:?}: no partial file in upper");
        assert!(work_is_clean(&f), "{point:?}: temp copy removed");
        assert_eq!(read(&ov, "d/file").len(), 100_000, "{point:?}: the old view stays");
        let fh = ov.open(ino, libc::O_WRONLY, None).unwrap();
        ov.release(fh);
        assert_eq!(std::fs::read(f.p("upper/d/file")).unwrap().len(), 100_000, "{point:?}: retry works");
    }
}

#[test]
fn leftovers_in_the_work_dir_are_removed_at_mount() {
    let f = Fixture::new(1);
    f.file("work/work/#strata-1-1", "half a copy");
    f.file("work/work/#strata-1-2/deep/x", "half a dir");
    let _ov = f.overlay();
    assert!(work_is_clean(&f));
}

#[test]
fn renaming_a_lower_directory_writes_a_redirect_and_keeps_its_content() {
    let f = Fixture::new(1);
    f.file("l0/src/sub/file", "content");
    let ov = f.overlay();
    let file_ino = ino_of(&ov, "src/sub/file").unwrap();
    ov.rename(ROOT, OsStr::new("src"), ROOT, OsStr::new("dst"), rustix::fs::RenameFlags::empty()).unwrap();
    assert_eq!(read(&ov, "dst/sub/file"), "content");
    assert_eq!(ino_of(&ov, "dst/sub/file").unwrap(), file_ino);
    assert_eq!(ino_of(&ov, "src"), Err(Errno::NOENT));
    let key = if rustix::process::geteuid().is_root() { "trusted.overlay.redirect" } else { "user.overlay.redirect" };
    let mut v = [0u8; 64];
    let n = rustix::fs::lgetxattr(f.p("upper/dst"), key, &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"/src");
    assert!(!f.p("upper/dst/sub").exists(), "the content is not copied");
    drop(ov);
    let again = f.overlay();
    assert_eq!(read(&again, "dst/sub/file"), "content");
}

/// Opens `path` with `O_WRONLY|O_TRUNC` and writes `data`.
fn truncate_and_write(ov: &Overlay, path: &str, data: &str) {
    let fh = ov.open(ino_of(ov, path).unwrap(), libc::O_WRONLY | libc::O_TRUNC, None).unwrap();
    ov.write(fh, 0, data.as_bytes(), None).unwrap();
    ov.release(fh);
}

#[test]
fn a_copy_up_links_every_name_the_view_shows_also_through_renamed_directories() {
    let f = Fixture::new(2);
    f.file("l1/a/c/c", "lower");
    std::fs::hard_link(f.p("l1/a/c/c"), f.p("l1/a/c/e")).unwrap();
    std::fs::create_dir(f.p("l1/b")).unwrap();
    std::fs::hard_link(f.p("l1/a/c/c"), f.p("l1/b/f")).unwrap();
    // A lower layer's own redirect: `q` shows `p` of the layer below, whose name is hidden.
    f.file("l1/o/f", "other");
    std::fs::create_dir(f.p("l1/p")).unwrap();
    std::fs::hard_link(f.p("l1/o/f"), f.p("l1/p/g")).unwrap();
    // A name no layer above shows still counts, as with kernel overlayfs.
    std::fs::create_dir(f.p("l1/h")).unwrap();
    std::fs::hard_link(f.p("l1/o/f"), f.p("l1/h/x")).unwrap();
    f.whiteout("l0/h");
    std::fs::create_dir(f.p("l0/q")).unwrap();
    let ns = if rustix::process::geteuid().is_root() { "trusted" } else { "user" };
    rustix::fs::lsetxattr(f.p("l0/q"), format!("{ns}.overlay.redirect").as_str(), b"/p", XattrFlags::empty()).unwrap();
    f.whiteout("l0/p");
    let ov = f.overlay();
    assert_eq!(read(&ov, "q/g"), "other");
    ov.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("new1"), rustix::fs::RenameFlags::empty()).unwrap();
    ov.rename(ROOT, OsStr::new("b"), ROOT, OsStr::new("nb"), rustix::fs::RenameFlags::empty()).unwrap();
    // Both names looked up, the written one first: a copy-up may start from either.
    let ino = ino_of(&ov, "new1/c/c").unwrap();
    assert_eq!(ino_of(&ov, "new1/c/e").unwrap(), ino);
    truncate_and_write(&ov, "new1/c/c", "written");
    truncate_and_write(&ov, "o/f", "again");
    let check = |ov: &Overlay| {
        for name in ["new1/c/c", "new1/c/e", "nb/f"] {
            assert_eq!(read(ov, name), "written", "{name}");
            assert_eq!(ov.getattr(ino_of(ov, name).unwrap(), None).unwrap().size, 7, "{name}");
        }
        assert_eq!(read(ov, "q/g"), "again");
        assert_eq!(ov.getattr(ino_of(ov, "o/f").unwrap(), None).unwrap().nlink, 3);
    };
    check(&ov);
    let upper_ino = |rel: &str| std::fs::symlink_metadata(f.p(rel)).unwrap().ino();
    assert_eq!(upper_ino("upper/new1/c/c"), upper_ino("upper/new1/c/e"));
    assert_eq!(upper_ino("upper/new1/c/c"), upper_ino("upper/nb/f"));
    assert_eq!(upper_ino("upper/o/f"), upper_ino("upper/q/g"));
    drop(ov);
    let ov = f.overlay();
    check(&ov);
    // Once no name of it is left in the view, its hidden link goes at the next mount.
    let hidden = || std::fs::read_dir(f.p("work/hidden-links")).unwrap().count();
    assert_eq!(hidden(), 1);
    ov.unlink(ino_of(&ov, "o").unwrap(), OsStr::new("f")).unwrap();
    ov.unlink(ino_of(&ov, "q").unwrap(), OsStr::new("g")).unwrap();
    drop(ov);
    let _ov = f.overlay();
    assert_eq!(hidden(), 0);
}

#[test]
fn a_redirect_is_followed_as_the_kernel_walks_it_from_each_layers_root() {
    let f = Fixture::new(4);
    f.file("l0/a/a/k", "kept");
    // In l1 a file is on the way to `a/a`: nothing below it belongs to the moved directory.
    f.file("l1/a", "a file");
    f.file("l2/a/a/hidden", "");
    f.file("l0/b/b/k", "kept");
    // In l1 a directory on the way is opaque: l1's part stays, nothing below it.
    f.file("l1/b/b/low", "");
    rustix::fs::lsetxattr(f.p("l1/b"), f.opaque_key(), b"y", XattrFlags::empty()).unwrap();
    f.file("l2/b/b/hidden", "");
    let ov = f.overlay();
    let a = ino_of(&ov, "a").unwrap();
    ov.rename(a, OsStr::new("a"), ROOT, OsStr::new("n"), rustix::fs::RenameFlags::empty()).unwrap();
    assert_eq!(names(&ov, ino_of(&ov, "n").unwrap()), [".", "..", "k"]);
    let b = ino_of(&ov, "b").unwrap();
    ov.rename(b, OsStr::new("b"), ROOT, OsStr::new("m"), rustix::fs::RenameFlags::empty()).unwrap();
    assert_eq!(names(&ov, ino_of(&ov, "m").unwrap()), [".", "..", "k", "low"]);
}

#[test]
fn the_root_reports_the_top_layers_root_inode_number() {
    let f = Fixture::new(1);
    let ov = f.overlay();
    let upper = std::fs::metadata(f.p("upper")).unwrap();
    assert_eq!(ov.getattr(ROOT, None).unwrap().ino, upper.ino(), "as kernel overlayfs reports it");
    let listed = listing(&ov, ROOT);
    assert_eq!((listed[0].ino, listed[1].ino), (upper.ino(), upper.ino()), ". and .. of the root");
}

#[test]
fn copy_up_leaves_the_lower_files_access_time_alone() {
    let f = Fixture::new(1);
    f.file("l0/old", "data");
    // An access time not after the modification time is what relatime would update on a read.
    let t = rustix::fs::Timespec { tv_sec: 1_000_000, tv_nsec: 0 };
    let ts = rustix::fs::Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(rustix::fs::CWD, f.p("l0/old"), &ts, rustix::fs::AtFlags::empty()).unwrap();
    let ov = f.overlay();
    let fh = ov.open(ino_of(&ov, "old").unwrap(), libc::O_WRONLY, None).unwrap();
    ov.release(fh);
    assert_eq!(std::fs::read(f.p("upper/old")).unwrap(), b"data");
    assert_eq!(std::fs::metadata(f.p("l0/old")).unwrap().atime(), 1_000_000, "the lower layer is not touched");
}

#[test]
fn names_of_255_bytes_work_though_their_wh_form_cannot_exist() {
    let f = Fixture::new(1);
    f.file(&format!("l0/{}", "b".repeat(255)), "lower");
    let ov = f.overlay();
    let long = "a".repeat(255);
    let c = ov.create(&Ctx::ROOT, ROOT, OsStr::new(&long), NewObject::File { mode: 0o644, flags: libc::O_RDWR });
    assert!(c.is_ok(), "{:?}", c.err());
    ov.unlink(ROOT, OsStr::new(&long)).unwrap();
    let lower = "b".repeat(255);
    ov.unlink(ROOT, OsStr::new(&lower)).unwrap();
    assert_eq!(ino_of(&ov, &lower), Err(Errno::NOENT));
    ov.create(&Ctx::ROOT, ROOT, OsStr::new(&lower), NewObject::Dir { mode: 0o755 }).unwrap();
    let too_long = "c".repeat(256);
    assert_eq!(ino_of(&ov, &too_long), Err(Errno::NAMETOOLONG));
    assert!(work_is_clean(&f));
}

#[test]
fn new_objects_get_the_callers_umask_and_no_whiteout_can_be_made() {
    let f = Fixture::new(1);
    let ov = f.overlay();
    let ctx = Ctx { umask: 0o002, ..Ctx::ROOT };
    ov.create(&ctx, ROOT, OsStr::new("f"), NewObject::File { mode: 0o666, flags: libc::O_RDWR }).unwrap();
    ov.create(&ctx, ROOT, OsStr::new("d"), NewObject::Dir { mode: 0o1777 }).unwrap();
    let mode = |p: &str| std::fs::symlink_metadata(f.p(p)).unwrap().mode() & 0o7777;
    // Whatever the daemon's own umask, the caller's decides.
    assert_eq!((mode("upper/f"), mode("upper/d")), (0o664, 0o1775));
    let wh = NewObject::Node { mode: libc::S_IFCHR | 0o644, rdev: 0 };
    assert_eq!(ov.create(&Ctx::ROOT, ROOT, OsStr::new("w"), wh).err(), Some(Errno::PERM));
}

#[test]
fn where_whiteout_devices_are_refused_wh_files_are_written_and_read() {
    let f = Fixture::new(1);
    f.file("l0/d/f", "lower");
    f.file("l0/d/sub/x", "");
    let mut ov = f.overlay();
    if let Some(upper) = ov.stack.upper.as_mut() {
        upper.whiteouts = super::layers::WhiteoutMode::WhFile;
    }
    let d = ino_of(&ov, "d").unwrap();
    ov.unlink(d, OsStr::new("f")).unwrap();
    assert!(f.p("upper/d/.wh.f").is_file(), "an empty .wh.f file");
    assert!(!f.p("upper/d/f").exists());
    assert_eq!(ino_of(&ov, "d/f"), Err(Errno::NOENT));
    ov.unlink(ino_of(&ov, "d/sub").unwrap(), OsStr::new("x")).unwrap();
    ov.rmdir(d, OsStr::new("sub")).unwrap();
    ov.create(&Ctx::ROOT, d, OsStr::new("sub"), NewObject::Dir { mode: 0o755 }).unwrap();
    assert!(f.p("upper/d/sub/.wh..wh..opq").is_file(), "opaque by marker file, not xattr");
    assert!(!f.p("upper/d/.wh.sub").exists(), "the name's .wh. file goes when it is made again");
    assert_eq!(names(&ov, ino_of(&ov, "d/sub").unwrap()), [".", ".."]);
    ov.create(&Ctx::ROOT, d, OsStr::new("f"), NewObject::File { mode: 0o644, flags: libc::O_RDWR }).unwrap();
    assert!(!f.p("upper/d/.wh.f").exists());
    assert_eq!(names(&ov, d), [".", "..", "f", "sub"]);
    assert!(work_is_clean(&f));
}

#[test]
fn whiteouts_are_links_of_one_shared_device_and_survive_its_loss() {
    let f = Fixture::new(1);
    for n in ["a", "b", "c"] {
        f.file(&format!("l0/{n}"), n);
    }
    let ov = f.overlay();
    ov.unlink(ROOT, OsStr::new("a")).unwrap();
    ov.unlink(ROOT, OsStr::new("b")).unwrap();
    let (a, b) =
        (std::fs::symlink_metadata(f.p("upper/a")).unwrap(), std::fs::symlink_metadata(f.p("upper/b")).unwrap());
    assert_eq!(a.ino(), b.ino(), "one inode for every whiteout");
    assert_eq!((a.rdev(), a.mode() & libc::S_IFMT), (0, libc::S_IFCHR));
    std::fs::remove_file(f.p("work/work").join(super::whiteout::SHARED_WHITEOUT)).unwrap();
    ov.unlink(ROOT, OsStr::new("c")).unwrap();
    let c = std::fs::symlink_metadata(f.p("upper/c")).unwrap();
    assert_eq!((c.rdev(), c.mode() & libc::S_IFMT), (0, libc::S_IFCHR));
    assert!(f.p("work/work").join(super::whiteout::SHARED_WHITEOUT).exists(), "a new shared whiteout");
    assert_eq!(names(&ov, ROOT), [".", ".."]);
}

#[test]
fn lookups_from_a_listing_agree_with_full_lookups_and_notice_changes() {
    let f = Fixture::new(3);
    f.file("l2/d/bottom", "b");
    f.file("l2/d/shadowed", "old");
    f.file("l1/d/shadowed", "new");
    f.file("l2/d/gone", "x");
    f.whiteout("l0/d/gone");
    f.file("l2/d/sub/x", "");
    f.file("l0/d/sub/y", "");
    f.file("l0/d/top", "t");
    let ov = f.overlay();
    let d = ino_of(&ov, "d").unwrap();
    let generation = ov.generation();
    let listing = listing(&ov, d);
    for e in listing.iter().filter(|e| e.name != "." && e.name != "..") {
        let (fast, fst) = ov.lookup_listed(d, e, generation).unwrap();
        let (full, st) = ov.lookup(d, &e.name).unwrap();
        assert_eq!((fast.ino, fast.src(), fst.st_size), (full.ino, full.src(), st.st_size), "{:?}", e.name);
    }
    assert!(listing.iter().all(|e| e.name != "gone"));
    // After a copy-up the listing's places are stale: the lookup finds the upper copy.
    let fh = ov.open(ino_of(&ov, "d/bottom").unwrap(), libc::O_WRONLY, None).unwrap();
    ov.release(fh);
    let bottom = listing.iter().find(|e| e.name == "bottom").unwrap();
    let (node, _) = ov.lookup_listed(d, bottom, generation).unwrap();
    assert!(ov.stack.is_upper(node.src().top()), "the copy, not the lower original");
}

#[test]
fn wh_files_hide_whether_the_directory_was_listed_first_or_not() {
    let f = Fixture::new(2);
    for d in ["listed", "unlisted"] {
        f.file(&format!("l1/{d}/gone"), "below");
        f.file(&format!("l1/{d}/kept"), "below");
        f.file(&format!("l0/{d}/.wh.gone"), "");
        f.file(&format!("l0/{d}/other"), "top");
    }
    f.file("l1/plain/x", "");
    f.file("l0/plain/y", "");
    let ov = f.overlay();
    let mut listed = names(&ov, ino_of(&ov, "listed").unwrap());
    listed.sort();
    assert_eq!(listed, [".", "..", "kept", "other"]);
    for d in ["listed", "unlisted"] {
        assert_eq!(ino_of(&ov, &format!("{d}/gone")), Err(Errno::NOENT), "{d}");
        assert!(ino_of(&ov, &format!("{d}/kept")).is_ok(), "{d}");
    }
    assert!(ino_of(&ov, "plain/x").is_ok() && ino_of(&ov, "plain/nothing") == Err(Errno::NOENT));
}

#[test]
fn only_a_renumbered_node_is_superseded_not_the_root() {
    let f = Fixture::new(1);
    f.file("l0/a", "x");
    let ov = f.overlay();
    // The root's node id (1) is not its inode number, and it was never renumbered: the kernel
    // may cache its attributes like any other node's.
    assert!(!ov.inodes.is_superseded(ROOT));
    let ino = ino_of(&ov, "a").unwrap();
    assert!(!ov.inodes.is_superseded(ino));
    let new = ov.inodes.renumber(ino);
    assert!(ov.inodes.is_superseded(ino));
    assert!(!ov.inodes.is_superseded(new));
}

#[test]
fn a_lower_file_without_xattrs_is_asked_once_and_forgotten_at_copy_up() {
    use super::inode::XattrsKnown;
    let f = Fixture::new(1);
    f.file("l0/bare", "b");
    f.file("l0/named", "n");
    rustix::fs::lsetxattr(f.p("l0/named"), "user.k", b"v", XattrFlags::empty()).unwrap();
    let ov = f.overlay();
    let known = |ino: u64| ov.inodes.get(ino).unwrap().state.lock().xattrs;
    let (bare, named) = (ino_of(&ov, "bare").unwrap(), ino_of(&ov, "named").unwrap());
    assert_eq!(known(bare), XattrsKnown::Unknown);
    assert_eq!(ov.getxattr(bare, OsStr::new("security.selinux")), Err(Errno::NODATA));
    assert_eq!(known(bare), XattrsKnown::Bare);
    assert_eq!(ov.listxattr(bare, std::process::id()).unwrap(), b"");
    // Lower layers do not change under a mount: what was learnt is not asked again (an xattr
    // put on the lower file behind the mount's back shows that).
    rustix::fs::lsetxattr(f.p("l0/bare"), "user.late", b"1", XattrFlags::empty()).unwrap();
    assert_eq!(ov.getxattr(bare, OsStr::new("user.late")), Err(Errno::NODATA));
    rustix::fs::lremovexattr(f.p("l0/bare"), "user.late").unwrap();
    // A file with xattrs is asked every time, and answers each name.
    assert_eq!(ov.getxattr(named, OsStr::new("user.k")).unwrap(), b"v");
    assert_eq!(ov.getxattr(named, OsStr::new("user.other")), Err(Errno::NODATA));
    assert_eq!(known(named), XattrsKnown::Some);
    // Setting one copies the file up: the new source is asked, never the old answer.
    ov.setxattr(bare, OsStr::new("user.new"), b"2", 0).unwrap();
    assert_eq!(known(bare), XattrsKnown::Unknown);
    assert_eq!(ov.getxattr(bare, OsStr::new("user.new")).unwrap(), b"2");
    assert_eq!(ov.listxattr(bare, std::process::id()).unwrap(), b"user.new\0");
    assert_eq!(known(bare), XattrsKnown::Unknown, "upper files are always asked");
    ov.removexattr(bare, OsStr::new("user.new")).unwrap();
    assert_eq!(ov.getxattr(bare, OsStr::new("user.new")), Err(Errno::NODATA));
}

#[test]
fn what_strata_made_is_not_asked_for_capabilities_or_a_default_acl_until_an_xattr_is_set() {
    let f = Fixture::new(1);
    let ov = f.overlay();
    let ctx = Ctx { umask: 0o022, ..Ctx::ROOT };
    let file = || NewObject::File { mode: 0o666, flags: libc::O_RDWR };
    ov.create(&ctx, ROOT, OsStr::new("f"), file()).unwrap();
    ov.create(&ctx, ROOT, OsStr::new("d"), NewObject::Dir { mode: 0o777 }).unwrap();
    let (fi, di) = (ino_of(&ov, "f").unwrap(), ino_of(&ov, "d").unwrap());
    let caps = OsStr::new("security.capability");
    // File capabilities of a new file: none, and the disk is not asked (a capability put on
    // the upper file behind the mount's back shows that).
    let net_raw: [u8; 20] = [0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rustix::fs::lsetxattr(f.p("upper/f"), caps, &net_raw, XattrFlags::empty()).unwrap();
    assert_eq!(ov.getxattr(fi, caps), Err(Errno::NODATA));
    // Any xattr set through the mount forgets that: the disk is asked again.
    ov.setxattr(fi, OsStr::new("user.k"), b"v", 0).unwrap();
    assert_eq!(ov.getxattr(fi, caps).unwrap(), net_raw);
    ov.removexattr(fi, caps).unwrap();
    assert_eq!(ov.getxattr(fi, caps), Err(Errno::NODATA));
    // A directory made under one without a default ACL has none: its new files take the
    // caller's umask.
    let mode = |p: &str| std::fs::symlink_metadata(f.p(p)).unwrap().mode() & 0o777;
    ov.create(&ctx, di, OsStr::new("a"), file()).unwrap();
    assert_eq!(mode("upper/d/a"), 0o644);
    // Once one is set through the mount, its new files take the ACL's mode, not the umask.
    let rwx_all: Vec<u8> = [2u32.to_le_bytes().to_vec(), acl_entry(0x01), acl_entry(0x04), acl_entry(0x20)].concat();
    ov.setxattr(di, OsStr::new("system.posix_acl_default"), &rwx_all, 0).unwrap();
    ov.create(&ctx, di, OsStr::new("b"), file()).unwrap();
    assert_eq!(mode("upper/d/b"), 0o666);
}

#[test]
fn a_setattr_naming_no_handle_goes_through_one_open_on_the_upper_object() {
    use super::attr::SetAttr;
    let f = Fixture::new(1);
    let ov = f.overlay();
    let made = ov.create(&Ctx::ROOT, ROOT, OsStr::new("f"), NewObject::File { mode: 0o600, flags: libc::O_RDWR });
    let made = made.unwrap();
    let ino = made.node.ino;
    let fh = ov.add_file(made.node, made.file.unwrap(), true);
    // The upper file's name changes behind the mount's back, so only the open fd reaches it.
    std::fs::rename(f.p("upper/f"), f.p("upper/g")).unwrap();
    let attr = ov.setattr(ino, None, &SetAttr { mode: Some(0o640), ..SetAttr::default() }).unwrap();
    assert_eq!(attr.perm, 0o640);
    assert_eq!(std::fs::symlink_metadata(f.p("upper/g")).unwrap().mode() & 0o7777, 0o640);
    // Once it is closed, the node is reached by its name again (gone here).
    ov.release(fh);
    assert_eq!(ov.setattr(ino, None, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).err(), Some(Errno::NOENT));
}

/// A POSIX ACL entry (`tag`, rwx, no id) as the kernel stores it in an xattr.
fn acl_entry(tag: u16) -> Vec<u8> {
    [tag.to_le_bytes().as_slice(), &7u16.to_le_bytes(), &u32::MAX.to_le_bytes()].concat()
}

#[test]
fn a_reader_going_on_after_changes_gets_every_name_that_stayed_exactly_once() {
    let f = Fixture::new(2);
    for i in 0..150 {
        f.file(&format!("l1/d/low{i:03}"), "below");
        f.file(&format!("l0/d/top{i:03}"), "top");
    }
    let ov = f.overlay();
    let d = ino_of(&ov, "d").unwrap();
    let all: Vec<String> = names(&ov, d);
    // A reader takes its first 100 entries; the offset it keeps is the last one's cookie.
    let first = listing(&ov, d);
    let cookies: Vec<u64> = first.iter().map(|e| e.cookie).collect();
    assert!(cookies.windows(2).all(|w| w[0] < w[1]), "a listing is in increasing cookie order");
    assert_eq!((cookies[0], cookies[1]), (1, 2), ". and .. come first");
    let mut got: Vec<String> = first[..100].iter().map(|e| e.name.to_string_lossy().into_owned()).collect();
    let offset = first[99].cookie;
    // Meanwhile names go (some already read, some not) and come; another reader starts over.
    let mut changed = std::collections::HashSet::new();
    for e in first.iter().skip(2).step_by(7) {
        ov.unlink(d, &e.name).unwrap();
        changed.insert(e.name.to_string_lossy().into_owned());
    }
    for i in 0..40 {
        let name = format!("new{i:02}");
        ov.create(&Ctx::ROOT, d, OsStr::new(&name), NewObject::Dir { mode: 0o755 }).unwrap();
        changed.insert(name);
    }
    let fresh = names(&ov, d);
    assert_eq!(fresh.len(), all.len() - (first.len() - 2).div_ceil(7) + 40);
    // The first reader goes on from its offset, in whatever listing is there now.
    let (now, start) = ov.readdir(d, offset).unwrap();
    assert!(now.generation > 0 && now.entries.iter().any(|e| e.name == "new00"), "the newer listing");
    got.extend(now.entries[start..].iter().map(|e| e.name.to_string_lossy().into_owned()));
    let mut seen = std::collections::HashSet::new();
    for name in &got {
        assert!(seen.insert(name.clone()), "{name} listed twice");
    }
    for name in all.iter().filter(|n| !changed.contains(*n)) {
        assert!(seen.contains(name), "{name} stayed and was missed");
    }
}
