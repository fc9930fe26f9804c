use super::*;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use rustix::fs::XattrFlags;

fn setx(p: &Path, k: &str, v: &[u8]) {
    rustix::fs::lsetxattr(p, k, v, XattrFlags::empty()).unwrap();
}

/// Gives `to` the mode and times of `from` (a directory copied up as a parent keeps them).
fn same_meta(from: &Path, to: &Path) {
    let md = fs::metadata(from).unwrap();
    fs::set_permissions(to, md.permissions()).unwrap();
    let t = fs::File::open(from).unwrap().metadata().unwrap().modified().unwrap();
    fs::File::open(to).unwrap().set_modified(t).unwrap();
}

/// An image layer and a container's upper dir over it, with one change of each kind.
pub(crate) fn scenario(t: &Path) -> (PathBuf, PathBuf) {
    let (low, up) = (t.join("low"), t.join("up"));
    for d in ["a", "d/sub", "ren/sub", "etc", "same"] {
        fs::create_dir_all(low.join(d)).unwrap();
    }
    for f in ["a/f1", "a/f2", "d/x", "d/sub/y", "ren/sub/z", "ren/top", "etc/hosts", "file", "same/s"] {
        fs::write(low.join(f), f).unwrap();
    }
    for d in ["a", "d", "moved", "new", "etc", "same"] {
        fs::create_dir_all(up.join(d)).unwrap();
    }
    fs::write(up.join("a/f1"), "changed").unwrap();
    fs::write(up.join("a/.wh.f2"), "").unwrap();
    fs::write(up.join("a/.wh.never-there"), "").unwrap();
    setx(&up.join("d"), "user.overlay.opaque", b"y");
    fs::write(up.join("d/new"), "n").unwrap();
    setx(&up.join("moved"), "user.overlay.redirect", b"/ren");
    fs::write(up.join("moved/extra"), "e").unwrap();
    fs::write(up.join("moved/.wh.top"), "").unwrap();
    fs::write(up.join(".wh.ren"), "").unwrap();
    fs::write(up.join("new/n"), "n").unwrap();
    symlink("../file", up.join("new/link")).unwrap();
    fs::write(up.join("etc/hosts"), "127.0.0.1 me").unwrap();
    fs::set_permissions(up.join("same"), fs::Permissions::from_mode(0o700)).unwrap();
    same_meta(&low.join("a"), &up.join("a"));
    same_meta(&low.join("etc"), &up.join("etc"));
    (low, up)
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.changes.iter().map(|c| c.to_string()).collect()
}

#[test]
fn reports_each_kind_of_change_like_docker_diff() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = scenario(t.path());
    let lowers = Lowers::open(&[low]).unwrap();
    let plan = plan(&up, &lowers).unwrap();
    assert_eq!(
        lines(&plan),
        [
            "C /a/f1",
            "D /a/f2",
            "C /d",
            "A /d/new",
            "A /moved",
            "A /moved/extra",
            "A /moved/sub",
            "A /moved/sub/z",
            "A /new",
            "A /new/link",
            "A /new/n",
            "D /ren",
            "C /same",
        ]
    );
}

fn describe(item: &Item) -> String {
    match item {
        Item::Object { path, from, src, .. } => {
            let from = match from {
                ReadFrom::Upper => "upper".to_string(),
                ReadFrom::Lower(n) => format!("lower{n}:{}", src.display()),
            };
            format!("{} ({from})", path.display())
        }
        Item::Whiteout { path, .. } => format!("whiteout {}", path.display()),
        Item::Opaque { dir, .. } => format!("opaque {}", dir.display()),
    }
}

#[test]
fn plans_markers_and_the_whole_content_of_renamed_dirs() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = scenario(t.path());
    let lowers = Lowers::open(&[low]).unwrap();
    let plan = plan(&up, &lowers).unwrap();
    let items: Vec<String> = plan.items.iter().map(describe).collect();
    assert_eq!(
        items,
        [
            "whiteout ren",
            "a (upper)",
            "whiteout a/f2",
            "a/f1 (upper)",
            "d (upper)",
            "opaque d",
            "d/new (upper)",
            "etc (upper)",
            "moved (upper)",
            "moved/extra (upper)",
            "moved/sub (lower0:ren/sub)",
            "moved/sub/z (lower0:ren/sub/z)",
            "new (upper)",
            "new/link (upper)",
            "new/n (upper)",
            "same (upper)",
        ]
    );
    assert_eq!(plan.bytes, ("changed".len() + "n".len() * 2 + "e".len() + "ren/sub/z".len()) as u64);
}

#[test]
fn a_new_dir_at_a_renamed_path_hides_what_was_there() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(low.join("src")).unwrap();
    fs::create_dir_all(low.join("dst")).unwrap();
    fs::write(low.join("src/f"), "f").unwrap();
    fs::write(low.join("dst/old"), "o").unwrap();
    fs::create_dir_all(up.join("dst")).unwrap();
    setx(&up.join("dst"), "user.overlay.redirect", b"/src");
    fs::write(up.join(".wh.src"), "").unwrap();
    let plan = plan(&up, &Lowers::open(&[low]).unwrap()).unwrap();
    let items: Vec<String> = plan.items.iter().map(describe).collect();
    assert_eq!(items, ["whiteout src", "dst (upper)", "opaque dst", "dst/f (lower0:src/f)"]);
    assert_eq!(lines(&plan), ["C /dst", "A /dst/f", "D /src"]);
}

#[test]
fn device_whiteouts_and_an_empty_upper() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    fs::write(low.join("f"), "f").unwrap();
    let lowers = Lowers::open(&[low]).unwrap();
    assert!(plan(&up, &lowers).unwrap().is_empty());
    if fd::mkwhiteout_at(fd::open_user_dir(&up).unwrap().as_fd(), OsStr::new("f")).is_err() {
        eprintln!("skipped the device part: mknod refused");
        return;
    }
    assert_eq!(lines(&plan(&up, &lowers).unwrap()), ["D /f"]);
}

#[test]
fn meta_reads_the_recorded_owner_and_skips_private_xattrs() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("f");
    fs::write(&f, "x").unwrap();
    setx(&f, "user.strata.owner", b"12:34");
    setx(&f, "user.overlay.origin", b"x");
    setx(&f, "user.b", b"2");
    setx(&f, "user.a", b"1");
    let root = fd::open_user_dir(t.path()).unwrap();
    let st = fd::stat_at(root.as_fd(), OsStr::new("f")).unwrap();
    let m = Meta::read(root.as_fd(), Path::new("f"), &st).unwrap();
    assert_eq!((m.uid, m.gid), (12, 34));
    let keys: Vec<_> = m.xattrs.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    assert_eq!(keys, ["user.a", "user.b"]);
}

#[test]
fn a_copy_up_keeps_the_owner_the_image_recorded_and_new_entries_get_the_containers() {
    use crate::image::owners::IdMap;
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    for f in ["kept", "chowned"] {
        fs::write(low.join(f), "old").unwrap();
        setx(&low.join(f), "user.strata.owner", b"1000:1000");
        fs::write(up.join(f), "new").unwrap();
        setx(&up.join(f), "user.overlay.strata.ino", &7u64.to_le_bytes());
    }
    fs::write(up.join("added"), "a").unwrap();
    let me = fs::metadata(&up).unwrap();
    let (u, g) = (me.uid(), me.gid());
    // A copy-up the container chowned (only root can make one here) has its own owner.
    let chowned = std::os::unix::fs::lchown(up.join("chowned"), Some(u + 1), Some(g + 1)).is_ok();
    let lowers = Lowers::open(&[low]).unwrap();
    let owners = |ids: IdMap| -> BTreeMap<String, (u32, u32)> {
        let plan = plan_with_ids(&up, &lowers, ids).unwrap();
        plan.items
            .iter()
            .filter_map(|i| match i {
                Item::Object { path, owner, .. } => Some((path.display().to_string(), owner.unwrap())),
                _ => None,
            })
            .collect()
    };
    let same = owners(IdMap::identity());
    assert_eq!((same["added"], same["kept"]), ((u, g), (1000, 1000)));
    // Rootless: the caller is the container's root; an id it does not map is the overflow id.
    let mapped = owners(IdMap::rootless((u, None), (g, None)));
    assert_eq!((mapped["added"], mapped["kept"]), ((0, 0), (1000, 1000)));
    if chowned {
        assert_eq!((same["chowned"], mapped["chowned"]), ((u + 1, g + 1), (65534, 65534)));
    } else {
        assert_eq!(same["chowned"], (1000, 1000));
    }
}
