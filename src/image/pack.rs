//! A [`Plan`] written as one layer tar (SEMANTICS.md "OCI layers"): the inverse of
//! [`super::unpack`].
//!
//! Every entry is a ustar header with full metadata: mode, owner (the plan's, else
//! `user.strata.owner` when rootless unpacking recorded one), mtime (seconds, as docker writes layers), symlink targets
//! verbatim, device numbers, FIFOs; xattrs that are not private to overlays as PAX
//! `SCHILY.xattr.*` records, sorted; names that do not fit ustar as PAX `path` / `linkpath`.
//! The names of one inode are one file and hardlinks to its first name. Directory names end in
//! `/`. Whiteouts are empty `.wh.NAME` files (mode 0600), opaque dirs get `.wh..wh..opq`. No
//! user/group names, no access times: the same upper gives the same tar, byte for byte.
//!
//! Content is read through fds beneath the layer roots, never following a symlink; a file whose
//! size changed since the plan was made is an error (the container was not paused).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use tar::{EntryType, Header};

use super::diff::{Item, Meta, Plan, ReadFrom};
use super::lower::Lowers;
use crate::fs::whiteout::{OPAQUE_MARKER, wh_name};
use crate::sys::{Errno, fd};

/// What went wrong writing the layer; each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// An entry could not be read.
    #[error("{path}: {op}: {errno}")]
    Read {
        /// The entry (merged path).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// A file changed while it was packed.
    #[error("{path}: changed while it was committed ({planned} bytes, now {now}); pause the container (-p)")]
    Changed {
        /// The file (merged path).
        path: PathBuf,
        /// Its size when the plan was made.
        planned: u64,
        /// What was read.
        now: u64,
    },
    /// The tar stream could not be written.
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
}

type Result<T> = std::result::Result<T, PackError>;

/// The roots objects are read from.
pub struct Roots<'a> {
    /// The upper dir.
    pub upper: BorrowedFd<'a>,
    /// The image's layers.
    pub lowers: &'a Lowers,
}

impl Roots<'_> {
    fn fd(&self, from: ReadFrom) -> BorrowedFd<'_> {
        match from {
            ReadFrom::Upper => self.upper,
            ReadFrom::Lower(n) => self.lowers.fd(n),
        }
    }
}

/// Writes `plan` as a tar into `out` and returns `out`; `progress` gets the content bytes.
pub fn write_tar<W: Write>(plan: &Plan, roots: &Roots<'_>, out: W, progress: &mut dyn FnMut(u64)) -> Result<W> {
    let mut p = Packer { tar: tar::Builder::new(out), roots, links: HashMap::new() };
    for item in &plan.items {
        match item {
            Item::Object { path, from, src, st, owner } => p.object(path, *from, src, st, *owner, progress)?,
            Item::Whiteout { path, mtime } => {
                let name = path.with_file_name(wh_name(path.file_name().unwrap_or_default()));
                p.marker(&name, *mtime)?;
            }
            Item::Opaque { dir, mtime } => p.marker(&dir.join(OPAQUE_MARKER), *mtime)?,
        }
    }
    p.tar.into_inner().map_err(PackError::Write)
}

struct Packer<'r, 'a, W: Write> {
    tar: tar::Builder<W>,
    roots: &'r Roots<'a>,
    /// First name packed of each multiply-linked inode, by (st_dev, st_ino).
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Packer<'_, '_, W> {
    fn object(
        &mut self,
        path: &Path,
        from: ReadFrom,
        src: &Path,
        st: &Stat,
        owner: Option<(u32, u32)>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let kind = fd::kind_of(st);
        if kind == FileType::Socket {
            log::warn!("{}: sockets cannot be part of a layer; left out", path.display());
            return Ok(());
        }
        let root = self.roots.fd(from);
        let err = |op| move |errno| PackError::Read { path: path.to_path_buf(), op, errno };
        let mut meta = Meta::read(root, src, st).map_err(err("reading metadata"))?;
        if let Some((uid, gid)) = owner {
            (meta.uid, meta.gid) = (uid, gid);
        }
        let mut name = path.as_os_str().as_bytes().to_vec();
        if kind == FileType::Directory {
            name.push(b'/');
        }
        let mut h = Header::new_ustar();
        set_common(&mut h, &meta, st);
        let first_link = self.first_link(st, &name);
        // A hardlink entry adds a name; the inode's xattrs came with its first name.
        let mut pax: Vec<(String, Vec<u8>)> = match first_link {
            Some(_) => Vec::new(),
            None => meta.xattrs.iter().map(|(k, v)| (xattr_record(k), v.clone())).collect(),
        };
        let data = match first_link {
            Some(target) => {
                h.set_entry_type(EntryType::Link);
                set_link(&mut h, &target, &mut pax);
                None
            }
            None => typed(&mut h, &mut pax, root, src, st).map_err(err("reading"))?,
        };
        set_name(&mut h, &name, &mut pax)?;
        self.append(&mut h, &pax, data, path, progress)
    }

    /// For an inode with several names: the tar name of the first one packed, if any yet.
    fn first_link(&mut self, st: &Stat, name: &[u8]) -> Option<Vec<u8>> {
        if st.st_nlink < 2 || fd::kind_of(st) == FileType::Directory {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key) {
            return Some(first.clone());
        }
        self.links.insert(key, name.to_vec());
        None
    }

    /// Writes the PAX records (if any), the header and the file content (if any).
    fn append(
        &mut self,
        h: &mut Header,
        pax: &[(String, Vec<u8>)],
        data: Option<File>,
        path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(PackError::Write)?;
        }
        h.set_cksum();
        let Some(file) = data else {
            return self.tar.append(h, io::empty()).map_err(PackError::Write);
        };
        let planned = h.size().unwrap_or(0);
        let now = file.metadata().map(|m| m.len()).unwrap_or(planned);
        if now != planned {
            return Err(PackError::Changed { path: path.to_path_buf(), planned, now });
        }
        let mut reader = Counted { inner: file.take(planned), count: 0, progress };
        self.tar.append(h, &mut reader).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => PackError::Changed { path: path.to_path_buf(), planned, now: reader.count },
            _ => PackError::Write(e),
        })?;
        if reader.count != planned {
            return Err(PackError::Changed { path: path.to_path_buf(), planned, now: reader.count });
        }
        Ok(())
    }

    /// An empty marker file (`.wh.NAME`, `.wh..wh..opq`).
    fn marker(&mut self, name: &Path, mtime: i64) -> Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        let mut pax = Vec::new();
        set_name(&mut h, name.as_os_str().as_bytes(), &mut pax)?;
        self.append(&mut h, &pax, None, name, &mut |_| {})
    }
}

/// Sets the entry type (and link target, device numbers, size) of a first name from its stat;
/// returns the file to read the content from, for a regular file.
fn typed(
    h: &mut Header,
    pax: &mut Vec<(String, Vec<u8>)>,
    root: BorrowedFd<'_>,
    src: &Path,
    st: &Stat,
) -> crate::sys::Result<Option<File>> {
    let kind = fd::kind_of(st);
    match kind {
        FileType::RegularFile => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(st.st_size as u64);
            let f = fd::open_beneath(root, src, OFlags::RDONLY, Mode::empty())?;
            return Ok(Some(File::from(f)));
        }
        FileType::Directory => h.set_entry_type(EntryType::Directory),
        FileType::Symlink => {
            h.set_entry_type(EntryType::Symlink);
            set_link(h, read_link(root, src)?.as_bytes(), pax);
        }
        FileType::Fifo => h.set_entry_type(EntryType::Fifo),
        _ => set_device(h, kind, st.st_rdev)?,
    }
    Ok(None)
}

/// A reader that counts (and reports) what is read through it.
struct Counted<'p, R> {
    inner: R,
    count: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The PAX record key of an xattr.
fn xattr_record(key: &OsStr) -> String {
    format!("SCHILY.xattr.{}", String::from_utf8_lossy(key.as_bytes()))
}

fn set_common(h: &mut Header, meta: &Meta, st: &Stat) {
    h.set_mode(meta.mode);
    h.set_uid(meta.uid.into());
    h.set_gid(meta.gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
}

fn read_link(root: BorrowedFd<'_>, path: &Path) -> crate::sys::Result<std::ffi::OsString> {
    let dir = fd::open_dir(root, path.parent().unwrap_or(Path::new("")))?;
    fd::readlink_at(dir.as_fd(), path.file_name().unwrap_or(OsStr::new(".")))
}

fn set_device(h: &mut Header, kind: FileType, rdev: u64) -> crate::sys::Result<()> {
    h.set_entry_type(if kind == FileType::BlockDevice { EntryType::Block } else { EntryType::Char });
    let bad = |e: io::Error| crate::sys::errno_of(&e);
    h.set_device_major(rustix::fs::major(rdev)).map_err(bad)?;
    h.set_device_minor(rustix::fs::minor(rdev)).map_err(bad)
}

/// Puts `name` in the ustar name (and prefix) fields, or in a PAX `path` record if it does not fit.
fn set_name(h: &mut Header, name: &[u8], pax: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let u = h.as_ustar_mut().ok_or_else(|| PackError::Write(io::Error::other("not a ustar header")))?;
    if name.len() <= u.name.len() {
        u.name[..name.len()].copy_from_slice(name);
        return Ok(());
    }
    // Split at a '/' so that the part before fits the prefix and the rest fits the name.
    let split = (0..name.len()).rev().find(|&i| {
        name[i] == b'/' && i <= u.prefix.len() && name.len() - i - 1 <= u.name.len() && name.len() - i - 1 > 0
    });
    match split {
        Some(i) => {
            u.prefix[..i].copy_from_slice(&name[..i]);
            u.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
        }
        None => {
            let n = u.name.len();
            u.name.copy_from_slice(&name[..n]);
            pax.push(("path".into(), name.to_vec()));
        }
    }
    Ok(())
}

/// Puts a link target in the header, or in a PAX `linkpath` record if it does not fit.
fn set_link(h: &mut Header, target: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    let old = h.as_old_mut();
    if target.len() <= old.linkname.len() {
        old.linkname[..target.len()].copy_from_slice(target);
    } else {
        let n = old.linkname.len();
        old.linkname.copy_from_slice(&target[..n]);
        pax.push(("linkpath".into(), target.to_vec()));
    }
}

#[cfg(test)]
mod tests;
