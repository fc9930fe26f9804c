//! Extended attributes through the mount (SEMANTICS.md "Private xattrs").
//!
//! Union-filesystem xattrs of the layers (`trusted.overlay.*`, `user.overlay.*`,
//! `user.fuseoverlayfs.*`, `user.strata.*`) are never shown and never copied up. As kernel
//! overlayfs does, a user's own `trusted.overlay.X` (or `user.overlay.X`) is stored escaped as
//! `trusted.overlay.overlay.X`, so nested overlays work. Setting or removing copies up first.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::XattrFlags;

use super::inode::{Node, XattrsKnown};
use super::whiteout::is_private_xattr;
use super::{Errno, Overlay, Result};
use crate::sys::xattr;

/// Prefixes under which a user's names are escaped rather than refused.
const ESCAPABLE: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// The on-disk name of a user-visible xattr name, or `None` if the name is reserved.
fn to_disk(key: &OsStr) -> Option<OsString> {
    let b = key.as_bytes();
    for p in ESCAPABLE {
        if let Some(rest) = b.strip_prefix(p.as_bytes()) {
            let mut v = p.as_bytes().to_vec();
            v.extend_from_slice(b"overlay.");
            v.extend_from_slice(rest);
            return Some(OsString::from_vec(v));
        }
    }
    if is_private_xattr(key) { None } else { Some(key.to_owned()) }
}

/// The user-visible name of an on-disk xattr name, or `None` if it is private.
fn from_disk(key: &OsStr) -> Option<OsString> {
    let b = key.as_bytes();
    for p in ESCAPABLE {
        if let Some(rest) = b.strip_prefix(p.as_bytes()) {
            let inner = rest.strip_prefix(b"overlay.")?;
            let mut v = p.as_bytes().to_vec();
            v.extend_from_slice(inner);
            return Some(OsString::from_vec(v));
        }
    }
    if is_private_xattr(key) { None } else { Some(key.to_owned()) }
}

/// File capabilities: asked by the kernel at every `chown` and at a file's first write.
const CAPABILITY: &str = "security.capability";

/// The virtual xattr that names the layer an object is shown from (never listed, never stored).
pub const LAYER_XATTR: &str = "user.strata.layer";

impl Overlay {
    /// `upper`, or `lower N (PATH)`; a merged directory adds the layers below it.
    fn layer_of(&self, node: &super::inode::Node) -> String {
        match node.src() {
            super::inode::Src::Dir(ls) if ls.len() > 1 => {
                let rest: Vec<String> = ls[1..].iter().map(|d| self.stack.describe(d.idx)).collect();
                format!("{}, merged with {}", self.stack.describe(ls[0].idx), rest.join(", "))
            }
            src => self.stack.describe(src.top()),
        }
    }

    /// `getxattr`. The virtual, read-only [`LAYER_XATTR`] tells which layer an object is shown from.
    pub fn getxattr(&self, ino: u64, key: &OsStr) -> Result<Vec<u8>> {
        let _tree = self.tree.read();
        let node = self.inodes.get(ino)?;
        if key == LAYER_XATTR {
            return Ok(self.layer_of(&node).into_bytes());
        }
        let disk = to_disk(key).ok_or(Errno::NODATA)?;
        if self.lower_and_bare(&node)? || (key == CAPABILITY && node.state.lock().no_capability) {
            return Err(Errno::NODATA);
        }
        let at = self.locate(&node)?;
        xattr::get(at.dir(), at.name(), &disk)?.ok_or(Errno::NODATA)
    }

    /// `listxattr` for the process `pid`: names separated by NUL bytes. As the kernel does,
    /// `trusted.*` names are listed only to a caller with `CAP_SYS_ADMIN`.
    pub fn listxattr(&self, ino: u64, pid: u32) -> Result<Vec<u8>> {
        let _tree = self.tree.read();
        let node = self.inodes.get(ino)?;
        if self.lower_and_bare(&node)? {
            return Ok(Vec::new());
        }
        let at = self.locate(&node)?;
        let shown: Vec<OsString> = xattr::list(at.dir(), at.name())?.iter().filter_map(|k| from_disk(k)).collect();
        let trusted = |k: &OsString| k.as_bytes().starts_with(b"trusted.");
        let hide_trusted = shown.iter().any(trusted) && !crate::sys::creds::has_sys_admin(pid);
        let mut out = Vec::new();
        for key in shown.iter().filter(|k| !(hide_trusted && trusted(k))) {
            out.extend_from_slice(key.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Whether `node` is shown from a lower layer and that instance has no xattr a caller can
    /// see. Lower layers never change under a mount, so this is asked of the disk once per
    /// source: `ls -l` asks every file for `security.selinux` and its ACL, and most files have
    /// no xattrs at all, so those answers then cost no system call.
    fn lower_and_bare(&self, node: &Node) -> Result<bool> {
        let src = {
            let st = node.state.lock();
            match st.xattrs {
                XattrsKnown::Bare => return Ok(true),
                XattrsKnown::Some => return Ok(false),
                XattrsKnown::Unknown if self.in_upper(&st.src) => return Ok(false),
                XattrsKnown::Unknown => st.src.clone(),
            }
        };
        let at = self.locate(node)?;
        let bare = !xattr::list(at.dir(), at.name())?.iter().any(|k| from_disk(k).is_some());
        let mut st = node.state.lock();
        if st.src == src {
            st.xattrs = if bare { XattrsKnown::Bare } else { XattrsKnown::Some };
        }
        Ok(bare)
    }

    /// `setxattr` (copies up first).
    pub fn setxattr(&self, ino: u64, key: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let _tree = self.tree.read();
        if key == LAYER_XATTR {
            return Err(Errno::PERM);
        }
        let disk = to_disk(key).ok_or(Errno::PERM)?;
        let node = self.inodes.get(ino)?;
        self.copy_up(&node, true)?;
        node.state.lock().xattrs_changed();
        let at = self.locate(&node)?;
        xattr::set(at.dir(), at.name(), &disk, value, XattrFlags::from_bits_retain(flags as u32))
    }

    /// `removexattr` (copies up first, unless the attribute is not there at all).
    pub fn removexattr(&self, ino: u64, key: &OsStr) -> Result<()> {
        let _tree = self.tree.read();
        let disk = to_disk(key).ok_or(Errno::NODATA)?;
        let node = self.inodes.get(ino)?;
        if !self.in_upper(&node.src()) {
            let at = self.locate(&node)?;
            xattr::get(at.dir(), at.name(), &disk)?.ok_or(Errno::NODATA)?;
            self.copy_up(&node, true)?;
        }
        node.state.lock().xattrs_changed();
        let at = self.locate(&node)?;
        xattr::remove(at.dir(), at.name(), &disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_hides_private_names() {
        let k = OsStr::new("trusted.overlay.opaque");
        let disk = to_disk(k).unwrap();
        assert_eq!(disk, "trusted.overlay.overlay.opaque");
        assert_eq!(from_disk(&disk).unwrap(), k);
        assert_eq!(from_disk(OsStr::new("trusted.overlay.opaque")), None);
        assert_eq!(from_disk(OsStr::new("user.fuseoverlayfs.opaque")), None);
        assert_eq!(to_disk(OsStr::new("user.strata.layer")), None);
        assert_eq!(from_disk(OsStr::new("user.mime")).unwrap(), "user.mime");
    }
}
