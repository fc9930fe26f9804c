//! A minimal Debian bookworm rootfs made on this machine with `debootstrap` from the mirror its
//! apt uses, as a tarball for `strata import`; kept in `/var/cache/strata-tests/` and rebuilt
//! when missing (by the database test and the network benchmark).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tarball is kept between runs.
pub const CACHE: &str = "/var/cache/strata-tests";

/// The mirror this machine's apt uses (deb.debian.org when none is found).
pub fn mirror() -> String {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let uri = sources.lines().find_map(|l| l.strip_prefix("URIs:")).map(|u| u.split_whitespace().next().unwrap_or(""));
    match uri {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => "http://deb.debian.org/debian".into(),
    }
}

/// A minimal Debian bookworm rootfs as a tarball, made with debootstrap once and kept.
pub fn debian_base() -> PathBuf {
    let tar = Path::new(CACHE).join("debian-bookworm-minbase.tar");
    if tar.exists() {
        return tar;
    }
    std::fs::create_dir_all(CACHE).unwrap();
    let work = tempfile::tempdir_in(CACHE).unwrap();
    let rootfs = work.path().join("rootfs");
    let st = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg(mirror())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("debootstrap (Debian package debootstrap)");
    assert!(st.success(), "debootstrap failed");
    let part = work.path().join("base.tar");
    let st = Command::new("tar").arg("-C").arg(&rootfs).args(["-cf"]).arg(&part).arg(".").status().unwrap();
    assert!(st.success());
    std::fs::rename(&part, &tar).unwrap();
    tar
}
