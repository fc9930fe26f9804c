//! Snapshots of a whole tree (as a mount shows it), for comparing two union filesystems.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// What a snapshot records of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub owner: (u32, u32),
    pub size: u64,
    pub nlink: u64,
    pub data: Option<Vec<u8>>,
    pub target: Option<String>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub rdev: u64,
}

/// A tree: every path with its node, and which paths share an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, Node>,
    pub same_inode: BTreeSet<Vec<String>>,
    pub inos: BTreeMap<String, u64>,
}

fn user_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(p, &mut buf[..]) else { return out };
    let names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    for name in names {
        if !name.starts_with("user.") && !name.starts_with("trusted.") {
            continue;
        }
        let mut v = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]) {
            out.insert(name, v[..len].to_vec());
        }
    }
    out
}

/// Walks `root` without following symlinks. Each entry is reached through an fd of its
/// directory (`/proc/self/fd/N/NAME`), so trees deeper than `PATH_MAX` are walked whole.
pub fn snapshot(root: &Path) -> Snapshot {
    use std::os::fd::AsRawFd;
    let mut nodes = BTreeMap::new();
    let mut inos: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut by_path = BTreeMap::new();
    type Parent = Option<(Arc<OwnedFd>, String)>;
    let mut stack: Vec<(String, Parent)> = vec![(String::new(), None)];
    while let Some((rel, parent)) = stack.pop() {
        let path = match &parent {
            None => root.to_path_buf(),
            Some((dir, name)) => Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name),
        };
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Kernel overlayfs lists a whiteout of the bottom layer in a directory that is not
            // merged, though no lookup finds it: such an entry is not part of the view.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                // Listed but not found: record it, the comparison will show it.
                let node = Node {
                    kind: 'E',
                    mode: e.raw_os_error().unwrap_or(0) as u32,
                    owner: (0, 0),
                    size: 0,
                    nlink: 0,
                    data: None,
                    target: None,
                    xattrs: BTreeMap::new(),
                    rdev: 0,
                };
                nodes.insert(rel.clone(), node);
                continue;
            }
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            'f'
        } else {
            'o'
        };
        let data = if ft.is_file() { std::fs::read(&path).ok() } else { None };
        let target = if ft.is_symlink() {
            std::fs::read_link(&path).ok().map(|t| t.to_string_lossy().into_owned())
        } else {
            None
        };
        nodes.insert(
            rel.clone(),
            Node {
                kind,
                mode: md.permissions().mode() & 0o7777,
                owner: (md.uid(), md.gid()),
                size: if ft.is_dir() { 0 } else { md.size() },
                nlink: md.nlink(),
                data,
                target,
                xattrs: user_xattrs(&path),
                rdev: md.rdev(),
            },
        );
        inos.entry((md.dev(), md.ino())).or_default().push(rel.clone());
        by_path.insert(rel.clone(), md.ino());
        if ft.is_dir() {
            let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW;
            let dir = match rustix::fs::open(&path, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()) {
                Ok(fd) => Arc::new(fd),
                Err(e) => panic!("opening /{rel}: {e}"),
            };
            let mut names: Vec<String> = match std::fs::read_dir(&path) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
                Err(e) => vec![format!("<readdir error {e}>")],
            };
            names.sort();
            for n in names {
                let child = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
                stack.push((child, Some((dir.clone(), n))));
            }
        }
    }
    let same_inode = inos
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Snapshot { nodes, same_inode, inos: by_path }
}

impl Snapshot {
    /// Differences from `other`, one line each (empty: equal). `ignore_dir_nlink` skips the link
    /// count of directories (upper-only vs merged directories differ between readers).
    pub fn diff(&self, other: &Snapshot, ignore_dir_nlink: bool) -> Vec<String> {
        let mut out = Vec::new();
        let keys: BTreeSet<&String> = self.nodes.keys().chain(other.nodes.keys()).collect();
        for k in keys {
            match (self.nodes.get(k), other.nodes.get(k)) {
                (Some(a), Some(b)) => {
                    let (mut a, mut b) = (a.clone(), b.clone());
                    if ignore_dir_nlink && a.kind == 'd' {
                        a.nlink = 0;
                        b.nlink = 0;
                    }
                    if a != b {
                        out.push(format!("/{k}: {a:?}\n    != {b:?}"));
                    }
                }
                (Some(_), None) => out.push(format!("/{k}: only in first")),
                (None, Some(_)) => out.push(format!("/{k}: only in second")),
                (None, None) => {}
            }
        }
        if self.same_inode != other.same_inode {
            out.push(format!("hardlink groups differ: {:?} != {:?}", self.same_inode, other.same_inode));
        }
        out
    }
}
