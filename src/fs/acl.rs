//! Default POSIX ACLs of new objects (SEMANTICS.md "Attributes": permissions as the kernel has them).
//!
//! An object created straight in an upper directory inherits the directory's default ACL from
//! the upper filesystem, which then ignores the umask. One built in the work dir (to replace a
//! whiteout in one rename) does not, so Strata applies the kernel's inheritance rules to it
//! itself, as kernel overlayfs does: the access ACL is the default one masked by the mode asked
//! for, the mode is masked by the ACL, and a directory also takes the default ACL.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::XattrFlags;

use super::Result;
use crate::sys::xattr;

/// The xattr holding an object's access ACL.
pub const ACCESS: &str = "system.posix_acl_access";
/// The xattr holding a directory's default ACL.
pub const DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// One ACL entry as stored in the xattr (little-endian tag, perm, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// The default ACL of directory `dir` (an fd of the directory itself), as stored; `None` if it
/// has none (or the filesystem has no ACLs).
pub fn default_of(dir: BorrowedFd<'_>) -> Option<Vec<u8>> {
    match xattr::get(dir, None, OsStr::new(DEFAULT)) {
        Ok(Some(v)) if parse(&v).is_some() => Some(v),
        _ => None,
    }
}

fn parse(b: &[u8]) -> Option<Vec<Entry>> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != VERSION || rest.len() % 8 != 0 || rest.is_empty() {
        return None;
    }
    let entry = |c: &[u8]| Entry {
        tag: u16::from_le_bytes([c[0], c[1]]),
        perm: u16::from_le_bytes([c[2], c[3]]),
        id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
    };
    Some(rest.chunks_exact(8).map(entry).collect())
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// What a new object gets from its parent's default ACL: its mode, and its access ACL unless the
/// mode says it all (the kernel's `posix_acl_create`).
#[derive(Debug, PartialEq, Eq)]
pub struct Inherited {
    /// The new object's permission bits (set-id and sticky bits kept from the mode asked for).
    pub mode: u32,
    /// The access ACL to store, if it holds more than the mode.
    pub access: Option<Vec<u8>>,
}

/// Applies default ACL `default` (as stored) to a new object asking for `mode`.
pub fn inherit(default: &[u8], mode: u32) -> Option<Inherited> {
    let mut acl = parse(default)?;
    let mut m = mode & 0o777;
    let mut extended = false;
    let (mut group_obj, mut mask) = (None, None);
    for (i, e) in acl.iter_mut().enumerate() {
        match e.tag {
            USER_OBJ => {
                e.perm &= ((m >> 6) & 7) as u16;
                m &= ((e.perm as u32) << 6) | 0o077;
            }
            USER | GROUP => extended = true,
            GROUP_OBJ => group_obj = Some(i),
            OTHER => {
                e.perm &= (m & 7) as u16;
                m &= (e.perm as u32) | 0o770;
            }
            MASK => {
                mask = Some(i);
                extended = true;
            }
            _ => return None,
        }
    }
    let g = &mut acl[mask.or(group_obj)?];
    g.perm &= ((m >> 3) & 7) as u16;
    m &= ((g.perm as u32) << 3) | 0o707;
    Some(Inherited { mode: (mode & 0o7000) | m, access: extended.then(|| encode(&acl)) })
}

/// Gives `name` in `dir`, built away from its parent, what the parent's default ACL would have:
/// the mode and access ACL, and for a directory the default ACL itself.
pub fn apply(dir: BorrowedFd<'_>, name: &OsStr, default: &[u8], mode: u32, is_dir: bool) -> Result<()> {
    let Some(inh) = inherit(default, mode) else { return Ok(()) };
    crate::sys::fd::chmod_at(dir, name, inh.mode)?;
    if let Some(access) = &inh.access {
        xattr::set(dir, Some(name), OsStr::new(ACCESS), access, XattrFlags::empty())?;
    }
    if is_dir {
        xattr::set(dir, Some(name), OsStr::new(DEFAULT), default, XattrFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: u32 = u32::MAX;

    fn acl(e: &[(u16, u16, u32)]) -> Vec<u8> {
        encode(&e.iter().map(|&(tag, perm, id)| Entry { tag, perm, id }).collect::<Vec<_>>())
    }

    #[test]
    fn minimal_default_acl_masks_the_mode_like_a_umask() {
        let d = acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 0, U)]);
        assert_eq!(inherit(&d, 0o666), Some(Inherited { mode: 0o640, access: None }));
        assert_eq!(inherit(&d, 0o2777).unwrap().mode, 0o2750);
    }

    #[test]
    fn extended_default_acl_gives_an_access_acl_masked_by_the_mode() {
        let d = acl(&[(USER_OBJ, 7, U), (USER, 7, 1234), (GROUP_OBJ, 7, U), (MASK, 7, U), (OTHER, 7, U)]);
        let inh = inherit(&d, 0o640).unwrap();
        assert_eq!(inh.mode, 0o640);
        let want = acl(&[(USER_OBJ, 6, U), (USER, 7, 1234), (GROUP_OBJ, 7, U), (MASK, 4, U), (OTHER, 0, U)]);
        assert_eq!(inh.access, Some(want));
        assert_eq!(inherit(b"junk", 0o644), None);
    }
}
