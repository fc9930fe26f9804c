//! Filling a new volume with what the image has at its mount point, once, as docker does
//! (`volume-nocopy` skips it): data, owners, modes, xattrs, times, symlinks (verbatim), hard
//! links, FIFOs and device nodes. The monitor does it once the container's rootfs is mounted
//! and before PID 1 goes on, so the copy is the view the container gets.
//!
//! The mount point is resolved inside the rootfs as the mount will be (`RESOLVE_IN_ROOT`: a
//! symlink of the image resolves as if the rootfs were `/`); below it every entry is reached by
//! fd, one name at a time, never through a symlink (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! `O_NOFOLLOW`), and made by fd in the volume's `_data`. A volume that was filled before, or
//! is not empty, is left as it is; `_data` is locked while it is filled, so two containers
//! starting with one new volume fill it once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::mounts::{Mount, Source};
use super::volumes::{self, VolumeError};
use crate::fs::copyup::copy_xattrs;
use crate::sys::copy::{Strategy, copy_data, may_be_sparse};
use crate::sys::lock::{self as flock, LockKind};
use crate::sys::{Errno, fd, mountfd};

/// Why a volume could not be filled; names the volume and the path inside the container.
#[derive(Debug, thiserror::Error)]
pub enum PrefillError {
    /// Reading the image's content or writing the copy failed.
    #[error("filling volume {volume} from {path}: {source}")]
    Copy {
        /// The volume.
        volume: String,
        /// The path inside the container.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The rootfs mount could not be opened.
    #[error("filling volumes: opening the rootfs: {0}")]
    Rootfs(io::Error),
    /// The volume's metadata could not be read or written.
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Fills each new volume of `mounts` (not `nocopy`) from the rootfs mounted at `rootfs`.
pub fn fill(root: &Path, rootfs: &Path, mounts: &[Mount]) -> Result<(), PrefillError> {
    let wanted: Vec<(&str, &Path)> = mounts
        .iter()
        .filter_map(|m| match &m.source {
            Source::Volume { name, nocopy: false, .. } => Some((name.as_str(), Path::new(&m.target))),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let rootfd = mountfd::open_host_dir(rootfs).map_err(PrefillError::Rootfs)?;
    for (name, target) in wanted {
        fill_one(root, rootfd.as_fd(), name, target)?;
    }
    Ok(())
}

/// Fills the volume `name` from `target` inside the rootfs `rootfs`, unless it was filled or
/// has content (then it counts as filled).
fn fill_one(root: &Path, rootfs: BorrowedFd<'_>, name: &str, target: &Path) -> Result<(), PrefillError> {
    let fail = |(rel, source): (PathBuf, io::Error)| PrefillError::Copy {
        volume: name.to_string(),
        path: target.join(rel),
        source,
    };
    let top = |e: io::Error| fail((PathBuf::new(), e));
    let data = File::open(volumes::data_dir(root, name)).map_err(top)?;
    flock::lock(data.as_fd(), LockKind::Exclusive).map_err(|e| top(e.into()))?;
    let mut v = volumes::load(root, name)?;
    // One with driver options mounts something else than `_data`.
    if v.filled || !v.options.is_empty() {
        return Ok(());
    }
    let entries = fd::open_dir_read(data.as_fd(), Path::new("")).and_then(fd::read_dir);
    let empty = entries.map_err(|e| top(e.into()))?.is_empty();
    if empty && !copy_tree(rootfs, target, data.as_fd()).map_err(fail)? {
        // Nothing there: the volume stays new, for the next container to fill.
        return Ok(());
    }
    v.filled = true;
    v.save(root)?;
    Ok(())
}

/// Copies the directory at `target` inside `rootfs` into `data`; `false` when there is none.
fn copy_tree(rootfs: BorrowedFd<'_>, target: &Path, data: BorrowedFd<'_>) -> Result<bool, (PathBuf, io::Error)> {
    let top = |e: Errno| (PathBuf::new(), io::Error::from(e));
    let src = match mountfd::open_existing(rootfs, target) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err((PathBuf::new(), e)),
    };
    let st = fd::stat_fd(src.as_fd()).map_err(top)?;
    if fd::kind_of(&st) != FileType::Directory {
        return Ok(false);
    }
    let mut copier = Copier { data, links: HashMap::new() };
    copier.dir(src.as_fd(), data, Path::new("")).map_err(|(rel, e)| (rel, e.into()))?;
    // `_data` itself takes the mount point's owner, mode, xattrs and times.
    copy_attrs(src.as_fd(), None, &Made::Object(fd::dup(data).map_err(top)?), &st).map_err(top)?;
    flock::sync_filesystem(data).map_err(top)?;
    Ok(true)
}

/// A copy of one tree into a volume's `_data`.
struct Copier<'a> {
    /// `_data`.
    data: BorrowedFd<'a>,
    /// The first copy of each multiply-linked file, by source (device, inode): its path in `_data`.
    links: HashMap<(u64, u64), PathBuf>,
}

/// An error, and the path (relative to the mount point) it happened at.
type CopyResult = Result<(), (PathBuf, Errno)>;

/// What attributes are set on: the object an fd is open on, or a symlink by its directory and
/// name (never followed). A container sharing the volume may swap a name for a symlink while
/// it is filled: nothing is done through a name that could follow one.
enum Made<'a> {
    Object(OwnedFd),
    Link(BorrowedFd<'a>, &'a OsStr),
}

impl Copier<'_> {
    /// Copies the entries of the directory `src` into the directory `dst`, at `rel`.
    fn dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &Path) -> CopyResult {
        let at = |e| (rel.to_path_buf(), e);
        let entries = fd::read_dir(fd::open_dir_read(src, Path::new("")).map_err(at)?).map_err(at)?;
        for e in entries {
            let path = rel.join(&e.name);
            let at = |e| (path.clone(), e);
            let st = fd::stat_at(src, &e.name).map_err(at)?;
            let Some(made) = self.entry(src, dst, &e.name, &path, &st).map_err(at)? else { continue };
            if let Made::Object(d) = &made
                && fd::kind_of(&st) == FileType::Directory
            {
                let s = fd::open_dir(src, Path::new(&e.name)).map_err(at)?;
                self.dir(s.as_fd(), d.as_fd(), &path)?;
            }
            // A directory's times are set once what is in it is made.
            copy_attrs(src, Some(&e.name), &made, &st).map_err(at)?;
        }
        Ok(())
    }

    /// Makes `name` in `dst` as it is in `src`; `None` when it needs nothing more (a hard link
    /// to a file copied before, a socket, a device node this namespace may not make).
    fn entry<'n>(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'n>,
        name: &'n OsStr,
        rel: &Path,
        st: &Stat,
    ) -> Result<Option<Made<'n>>, Errno> {
        let kind = fd::kind_of(st);
        let object = match kind {
            FileType::Directory => {
                fd::mkdir_at(dst, name, 0o700)?;
                fd::open_dir_read(dst, Path::new(name))?
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                        let parent = fd::open_dir(self.data, first.parent().unwrap_or(Path::new("")))?;
                        fd::link_at(parent.as_fd(), first.file_name().ok_or(Errno::INVAL)?, dst, name)?;
                        return Ok(None);
                    }
                    self.links.insert((st.st_dev, st.st_ino), rel.to_path_buf());
                }
                copy_file(src, dst, name, st)?
            }
            FileType::Symlink => {
                fd::symlink_at(&fd::readlink_at(src, name)?, dst, name)?;
                return Ok(Some(Made::Link(dst, name)));
            }
            FileType::Socket => return Ok(None),
            _ => match fd::mknod_at(dst, name, st.st_mode, st.st_rdev) {
                // A rootless container may not make device nodes.
                Err(Errno::PERM) if kind != FileType::Fifo => {
                    log::warn!("device node {} not copied into the volume", rel.display());
                    return Ok(None);
                }
                Err(e) => return Err(e),
                Ok(()) => fd::open_at(dst, name, OFlags::PATH, Mode::empty())?,
            },
        };
        // What was made is still what is there (not a symlink put in its place).
        if fd::kind_of(&fd::stat_fd(object.as_fd())?) != kind {
            return Err(Errno::EXIST);
        }
        Ok(Some(Made::Object(object)))
    }
}

/// Copies the data of the regular file `name` of `src` into a new file `name` in `dst`, and
/// gives the new file's fd.
fn copy_file(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, name: &OsStr, st: &Stat) -> Result<OwnedFd, Errno> {
    let from = File::from(fd::open_at(src, name, OFlags::RDONLY, Mode::empty())?);
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY;
    let to = File::from(fd::open_at(dst, name, flags, Mode::from_raw_mode(0o600))?);
    let sparse = may_be_sparse(st.st_size, st.st_blocks);
    copy_data(&from, &to, st.st_size as u64, Strategy::CopyFileRange, sparse, &mut || Ok(()))?;
    Ok(OwnedFd::from(to))
}

/// Gives `made` the owner, mode, xattrs and times of `st` (of `src`/`name`; `None`: `src`
/// itself). An owner the user namespace does not map is left as it is.
fn copy_attrs(src: BorrowedFd<'_>, name: Option<&OsStr>, made: &Made<'_>, st: &Stat) -> Result<(), Errno> {
    let (uid, gid) = (Some(st.st_uid), Some(st.st_gid));
    let owner = match made {
        Made::Object(f) => fd::chown_fd(f.as_fd(), uid, gid),
        Made::Link(dir, n) => fd::chown_at(*dir, n, uid, gid),
    };
    match owner {
        Err(Errno::INVAL) | Err(Errno::OVERFLOW) => {}
        other => other?,
    }
    let (atime, mtime) = fd::times_of(st);
    match made {
        Made::Object(f) => {
            // After the owner, which clears setuid and setgid bits.
            fd::chmod_fd(f.as_fd(), st.st_mode)?;
            copy_xattrs(src, name, f.as_fd(), None)?;
            fd::utimes_at(f.as_fd(), None, atime, mtime)
        }
        Made::Link(dir, n) => {
            copy_xattrs(src, name, *dir, Some(n))?;
            fd::utimes_at(*dir, Some(n), atime, mtime)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::mounts::parse_volume;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn fill_from(image: &Path, root: &Path, spec: &str) -> Vec<Mount> {
        let mut mounts = vec![parse_volume(spec).unwrap()];
        let lock = volumes::lock(root, LockKind::Shared).unwrap();
        volumes::provide(root, &mut mounts).unwrap();
        drop(lock);
        fill(root, image, &mounts).unwrap();
        mounts
    }

    #[test]
    fn a_new_volume_gets_the_tree_once() {
        let t = tempfile::tempdir().unwrap();
        let (image, root) = (t.path().join("rootfs"), t.path().join("root"));
        let d = image.join("srv/data");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), "hello").unwrap();
        std::fs::set_permissions(d.join("sub/f"), std::fs::Permissions::from_mode(0o4751)).unwrap();
        std::fs::hard_link(d.join("sub/f"), d.join("f2")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("abs")).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1770)).unwrap();
        // The mount point is a symlink resolved inside the rootfs.
        std::os::unix::fs::symlink("/srv/data", image.join("data")).unwrap();
        let mounts = fill_from(&image, &root, "vol:/data");
        let data = volumes::data_dir(&root, "vol");
        assert_eq!(std::fs::read_to_string(data.join("sub/f")).unwrap(), "hello");
        let f = std::fs::metadata(data.join("sub/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4751);
        assert_eq!(f.ino(), std::fs::metadata(data.join("f2")).unwrap().ino(), "hard links stay links");
        assert_eq!(std::fs::read_link(data.join("abs")).unwrap(), Path::new("/etc/passwd"));
        let top = std::fs::metadata(&data).unwrap();
        assert_eq!(top.mode() & 0o7777, 0o1770, "_data takes the mount point's mode");
        assert_eq!(top.mtime(), std::fs::metadata(&d).unwrap().mtime());
        assert!(volumes::load(&root, "vol").unwrap().filled);
        // Once: what the volume holds now is kept, even if emptied.
        std::fs::remove_dir_all(data.join("sub")).unwrap();
        std::fs::remove_file(data.join("f2")).unwrap();
        std::fs::remove_file(data.join("abs")).unwrap();
        fill(&root, &image, &mounts).unwrap();
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    }

    #[test]
    fn nocopy_missing_paths_and_volumes_with_content_are_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let (image, root) = (t.path().join("rootfs"), t.path().join("root"));
        std::fs::create_dir_all(image.join("data")).unwrap();
        std::fs::write(image.join("data/f"), "x").unwrap();
        fill_from(&image, &root, "nc:/data:nocopy");
        assert_eq!(std::fs::read_dir(volumes::data_dir(&root, "nc")).unwrap().count(), 0);
        fill_from(&image, &root, "missing:/nowhere");
        assert!(!volumes::load(&root, "missing").unwrap().filled, "a later container may still fill it");
        let lock = volumes::lock(&root, LockKind::Shared).unwrap();
        volumes::create(&root, Some("full"), &volumes::New::default()).unwrap();
        drop(lock);
        std::fs::write(volumes::data_dir(&root, "full").join("mine"), "m").unwrap();
        fill_from(&image, &root, "full:/data");
        assert!(!volumes::data_dir(&root, "full").join("f").exists());
        assert!(volumes::load(&root, "full").unwrap().filled);
    }
}
