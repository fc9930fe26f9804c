//! Who may own what: whether this process can give files any owner, and how the ids a rootless
//! container wrote into its upper dir map back to the ids the container saw.
//!
//! Unpacking a layer as root (in the initial user namespace) sets every owner the tar names.
//! Anywhere else — a plain user, or root of a user namespace that maps only some ids — an
//! owner that cannot be set is recorded in `user.strata.owner` instead ([`super::unpack`]).
//!
//! A rootless container runs in a user namespace where the caller is root and the caller's
//! `/etc/subuid` / `/etc/subgid` ranges (when it has some) are ids 1 and up
//! (`crate::container::namespaces::map_ids`). What it creates lands on disk with the host
//! ids, which [`IdMap::to_container`] turns back into the container's before they go into a
//! layer; an id the namespace does not map is shown as the overflow id 65534, as the kernel does.

use crate::container::namespaces::{SubRange, sub_range};

/// The id a user namespace shows for an id it does not map (`/proc/sys/kernel/overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

/// Whether this process is root of the initial user namespace (it can chown to any id, mknod,
/// and set `trusted.*` xattrs).
pub fn is_privileged() -> bool {
    rustix::process::geteuid().is_root() && in_initial_user_namespace()
}

/// Whether this process is in the initial user namespace (its uid map is the identity of
/// every id).
fn in_initial_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"],
        Err(_) => true,
    }
}

/// One range of a user namespace's id map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    inside: u32,
    outside: u32,
    count: u32,
}

/// Host ids to the ids of a rootless container (uids and gids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    uids: Vec<Extent>,
    gids: Vec<Extent>,
}

impl IdMap {
    /// The identity: what this process sees is what the container saw (root, or a process in
    /// the container's own user namespace).
    pub fn identity() -> IdMap {
        IdMap::default()
    }

    /// The map of the containers this process makes: identity as root; otherwise the caller
    /// is root and its subordinate ranges are ids 1 and up.
    pub fn of_caller() -> IdMap {
        let euid = rustix::process::geteuid();
        if euid.is_root() {
            return IdMap::identity();
        }
        let (uid, gid) = (euid.as_raw(), rustix::process::getegid().as_raw());
        let name = user_name(uid);
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        IdMap::rootless(
            (uid, sub_range(&read("/etc/subuid"), &name, uid)),
            (gid, sub_range(&read("/etc/subgid"), &name, gid)),
        )
    }

    /// The caller's `uid` and `gid` as root, each with its subordinate range as ids 1 and up.
    pub fn rootless(uid: (u32, Option<SubRange>), gid: (u32, Option<SubRange>)) -> IdMap {
        let extents = |(id, sub): (u32, Option<SubRange>)| {
            let mut v = vec![Extent { inside: 0, outside: id, count: 1 }];
            v.extend(sub.map(|r| Extent { inside: 1, outside: r.start, count: r.count }));
            v
        };
        IdMap { uids: extents(uid), gids: extents(gid) }
    }

    /// The container's view of host owner `uid:gid`.
    pub fn to_container(&self, uid: u32, gid: u32) -> (u32, u32) {
        (inside(&self.uids, uid), inside(&self.gids, gid))
    }
}

fn inside(map: &[Extent], id: u32) -> u32 {
    if map.is_empty() {
        return id;
    }
    map.iter()
        .find(|e| id >= e.outside && id - e.outside < e.count)
        .map(|e| e.inside + (id - e.outside))
        .unwrap_or(OVERFLOW_ID)
}

/// The name of the user `uid` in `/etc/passwd` (empty if none).
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find(|l| l.split(':').nth(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid));
    entry.and_then(|l| l.split(':').next()).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_map_back_to_the_container() {
        assert_eq!(IdMap::identity().to_container(1000, 5), (1000, 5));
        let single = IdMap::rootless((1000, None), (1001, None));
        assert_eq!(single.to_container(1000, 1001), (0, 0));
        assert_eq!(single.to_container(0, 7), (OVERFLOW_ID, OVERFLOW_ID));
        let sub = SubRange { start: 100_000, count: 65_536 };
        let ranged = IdMap::rootless((1000, Some(sub)), (1000, Some(sub)));
        assert_eq!(ranged.to_container(1000, 100_000), (0, 1));
        assert_eq!(ranged.to_container(100_999, 165_535), (1000, 65_536));
        assert_eq!(ranged.to_container(165_536, 5), (OVERFLOW_ID, OVERFLOW_ID));
    }
}
