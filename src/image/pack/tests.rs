use super::*;

use std::fs;
use std::os::unix::fs::symlink;

use rustix::fs::XattrFlags;

use crate::image::diff::{self, tests::scenario};
use crate::image::unpack;

/// One tar entry as text: type, name, link, mode, owner, size, xattrs.
fn listing(tar: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e.link_name_bytes().map(|l| format!(" -> {}", String::from_utf8_lossy(&l))).unwrap_or_default();
        let mut xattrs = String::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(k) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs += &format!(" {k}={}", String::from_utf8_lossy(ext.value_bytes()));
                }
            }
        }
        let kind = match h.entry_type() {
            EntryType::Directory => 'd',
            EntryType::Symlink => 'l',
            EntryType::Link => 'h',
            EntryType::Fifo => 'p',
            _ => '-',
        };
        out.push(format!(
            "{kind} {name}{link} {:o} {}:{} {}{xattrs}",
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.size().unwrap()
        ));
    }
    out
}

fn pack(up: &Path, lowers: &Lowers) -> Vec<u8> {
    let plan = diff::plan(up, lowers).unwrap();
    let upper = fd::open_user_dir(up).unwrap();
    let roots = Roots { upper: upper.as_fd(), lowers };
    let mut bytes = 0;
    let tar = write_tar(&plan, &roots, Vec::new(), &mut |n| bytes += n).unwrap();
    assert_eq!(bytes, plan.bytes);
    tar
}

#[test]
fn packs_changes_with_markers_and_renamed_content() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = scenario(t.path());
    let lowers = Lowers::open(&[low]).unwrap();
    let tar = pack(&up, &lowers);
    let names: Vec<String> = listing(&tar).iter().map(|l| l.split(' ').nth(1).unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(
        names,
        [
            ".wh.ren",
            "a/",
            "a/.wh.f2",
            "a/f1",
            "d/",
            "d/.wh..wh..opq",
            "d/new",
            "etc/",
            "moved/",
            "moved/extra",
            "moved/sub/",
            "moved/sub/z",
            "new/",
            "new/link",
            "new/n",
            "same/",
        ]
    );
    assert_eq!(tar, pack(&up, &lowers), "the same upper gives the same tar");
}

#[test]
fn keeps_metadata_links_xattrs_and_long_names() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(&low).unwrap();
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "n".repeat(140));
    fs::create_dir_all(up.join(&long_dir)).unwrap();
    fs::write(up.join(&long_name), "long").unwrap();
    fs::write(up.join("f"), "data").unwrap();
    fs::hard_link(up.join("f"), up.join("g")).unwrap();
    symlink("t".repeat(150), up.join("s")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, up.join("p"), rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o640), 0)
        .unwrap();
    let set = |p: &str, k: &str, v: &[u8]| rustix::fs::lsetxattr(up.join(p), k, v, XattrFlags::empty()).unwrap();
    set("f", "user.mime", b"text/plain");
    set("f", "user.overlay.origin", b"private");
    set("f", "user.strata.owner", b"1000:1001");
    let lowers = Lowers::open(&[low]).unwrap();
    let list = listing(&pack(&up, &lowers));
    let want = [
        format!("d {long_dir}/ 755 0:0 0"),
        format!("- {long_name} 644 0:0 4"),
        "- f 644 1000:1001 4 user.mime=text/plain".to_string(),
        "h g -> f 644 1000:1001 0".to_string(),
        "p p 640 0:0 0".to_string(),
        format!("l s -> {} 777 0:0 0", "t".repeat(150)),
    ];
    assert_eq!(list, want);
}

#[test]
fn the_tar_unpacks_to_what_the_container_shows() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = scenario(t.path());
    let lowers = Lowers::open(std::slice::from_ref(&low)).unwrap();
    let tar = pack(&up, &lowers);
    let out = t.path().join("unpacked");
    fs::create_dir(&out).unwrap();
    let root = fs::File::open(&out).unwrap();
    unpack::unpack(&tar[..], root.as_fd(), unpack::Options { rootless: false, skeleton: false }).unwrap();
    // The new layer over the image shows what the container showed.
    let view = Lowers::open(&[out, low]).unwrap();
    let shown = |p: &str| view.lookup(Path::new(p)).unwrap().map(|s| fd::kind_of(s.st()));
    assert_eq!(shown("moved/sub/z"), Some(FileType::RegularFile));
    assert_eq!(shown("moved/top"), None);
    assert_eq!(shown("ren"), None);
    assert_eq!(shown("a/f2"), None);
    assert_eq!(shown("d/x"), None);
    assert_eq!(shown("d/new"), Some(FileType::RegularFile));
    assert_eq!(shown("etc/hosts"), Some(FileType::RegularFile));
    let hosts = view.lookup(Path::new("etc/hosts")).unwrap().unwrap();
    assert_eq!(hosts.top().0, 1, "the run-time /etc/hosts of the container is not in the layer");
}

#[test]
fn a_file_that_changes_while_it_is_packed_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    fs::write(up.join("grows"), "12345").unwrap();
    let lowers = Lowers::open(&[low]).unwrap();
    let plan = diff::plan(&up, &lowers).unwrap();
    fs::write(up.join("grows"), "1").unwrap();
    fs::write(up.join("grows"), "123456789").unwrap();
    let upper = fd::open_user_dir(&up).unwrap();
    let roots = Roots { upper: upper.as_fd(), lowers: &lowers };
    let e = write_tar(&plan, &roots, Vec::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, PackError::Changed { planned: 5, now: 9, .. }), "{e}");
    assert!(e.to_string().contains("grows"), "{e}");
}

#[test]
fn packs_device_nodes_with_their_numbers() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    let null = rustix::fs::makedev(1, 3);
    let mode = Mode::from_raw_mode(0o666);
    if rustix::fs::mknodat(rustix::fs::CWD, up.join("null"), FileType::CharacterDevice, mode, null).is_err() {
        eprintln!("skipped: mknod needs privileges");
        return;
    }
    let tar = pack(&up, &Lowers::open(&[low]).unwrap());
    let mut ar = tar::Archive::new(&tar[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().entry_type(), EntryType::Char);
    assert_eq!((e.header().device_major().unwrap(), e.header().device_minor().unwrap()), (Some(1), Some(3)));
}
