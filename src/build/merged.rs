//! The files `COPY --from` takes from a stage or an image: the paths it names, read from the
//! image's merged view ([`Lowers`]: whiteouts and opaque directories honoured, every layer
//! read by fd, no symlink followed) and written into a directory of Strata's own, which then
//! serves as the step's build context.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::context::clean;
use super::dockerignore;
use crate::image::lower::{LowerError, Lowers, Shown};
use crate::sys::fd;

/// A path of the image that could not be copied out.
#[derive(Debug, thiserror::Error)]
pub enum MergedError {
    /// Reading a layer.
    #[error(transparent)]
    Layer(#[from] LowerError),
    /// Writing the copy.
    #[error("{path}: {source}")]
    Io {
        /// The path written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Nothing in the image at the path.
    #[error("{0}: no such file or directory in the image")]
    Missing(String),
}

type Result<T> = std::result::Result<T, MergedError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MergedError + '_ {
    move |source| MergedError::Io { path: path.to_path_buf(), source }
}

/// Copies what the merged image shows at `src` (wildcards allowed in its last name) to the same
/// relative path under `into`.
pub fn extract(lowers: &Lowers, src: &str, into: &Path) -> Result<()> {
    let rel = clean(src).ok_or_else(|| MergedError::Missing(src.to_string()))?;
    let (dir, last) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
    let names: Vec<String> = if last.contains(['*', '?', '[']) {
        let Some(Shown::Dir { insts, .. }) = lowers.lookup(Path::new(dir))? else {
            return Err(MergedError::Missing(src.to_string()));
        };
        let mut found = Vec::new();
        for n in lowers.names(&insts)? {
            let Some(s) = n.to_str().filter(|s| dockerignore::name_match(last, s)) else { continue };
            if lowers.child(&insts, &n)?.is_some() {
                found.push(s.to_string());
            }
        }
        found
    } else {
        vec![last.to_string()]
    };
    let parent = into.join(dir);
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    for name in names {
        let rel = Path::new(dir).join(&name);
        let shown = lowers.lookup(&rel)?.ok_or_else(|| MergedError::Missing(src.to_string()))?;
        write(lowers, &shown, &into.join(&rel))?;
    }
    Ok(())
}

/// The content of the regular file the merged image shows at `rel` (relative), if any.
pub fn read_file(lowers: &Lowers, rel: &Path) -> Result<Option<Vec<u8>>> {
    let Some(Shown::NonDir { layer, path, st }) = lowers.lookup(rel)? else { return Ok(None) };
    if fd::kind_of(&st) != FileType::RegularFile {
        return Ok(None);
    }
    let f = fd::open_beneath(lowers.fd(layer), &path, OFlags::RDONLY, Mode::empty())
        .map_err(lowers.error(layer, &path, "open"))?;
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut fs::File::from(f), &mut buf).map_err(io_err(&path))?;
    Ok(Some(buf))
}

/// Writes `shown` (a directory with what it holds) at the host path `to`.
fn write(lowers: &Lowers, shown: &Shown, to: &Path) -> Result<()> {
    let st = *shown.st();
    match shown {
        Shown::Dir { insts, .. } => {
            if fs::symlink_metadata(to).is_err() {
                fs::create_dir(to).map_err(io_err(to))?;
            }
            for name in lowers.names(insts)? {
                if let Some(child) = lowers.child(insts, &name)? {
                    write(lowers, &child, &to.join(&name))?;
                }
            }
        }
        Shown::NonDir { layer, path, .. } => {
            let (layer, path) = (*layer, path.as_path());
            match fd::kind_of(&st) {
                FileType::RegularFile => copy_file(lowers, layer, path, to)?,
                FileType::Symlink => {
                    let (dir, name) = parent_of(lowers, layer, path)?;
                    let target = fd::readlink_at(dir.as_fd(), name).map_err(lowers.error(layer, path, "readlink"))?;
                    std::os::unix::fs::symlink(&target, to).map_err(io_err(to))?;
                }
                // Devices, fifos and sockets are of no use in a build context.
                _ => return Ok(()),
            }
        }
    }
    set_meta(to, &st)
}

fn parent_of<'p>(lowers: &Lowers, layer: usize, path: &'p Path) -> Result<(std::os::fd::OwnedFd, &'p OsStr)> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let name = path.file_name().unwrap_or_default();
    let dir = fd::open_dir(lowers.fd(layer), parent).map_err(lowers.error(layer, parent, "open"))?;
    Ok((dir, name))
}

fn copy_file(lowers: &Lowers, layer: usize, path: &Path, to: &Path) -> Result<()> {
    let src = fd::open_beneath(lowers.fd(layer), path, OFlags::RDONLY, Mode::empty())
        .map_err(lowers.error(layer, path, "open"))?;
    let mut src = fs::File::from(src);
    let mut dst = fs::File::create(to).map_err(io_err(to))?;
    io::copy(&mut src, &mut dst).map_err(io_err(to))?;
    Ok(())
}

/// Mode (not for symlinks), owner (as root) and mtime of `st` on `to`.
fn set_meta(to: &Path, st: &Stat) -> Result<()> {
    let is_link = fd::kind_of(st) == FileType::Symlink;
    if !is_link {
        fs::set_permissions(to, fs::Permissions::from_mode(st.st_mode & 0o7777)).map_err(io_err(to))?;
    }
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(to, Some(st.st_uid), Some(st.st_gid)).map_err(io_err(to))?;
    }
    if !is_link {
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32);
        fs::File::open(to).and_then(|f| f.set_modified(mtime)).map_err(io_err(to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whited_out_and_opaque_entries_are_not_copied() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom, out) = (t.path().join("top"), t.path().join("bottom"), t.path().join("out"));
        fs::create_dir_all(bottom.join("w/opq")).unwrap();
        fs::write(bottom.join("w/keep"), "k").unwrap();
        fs::write(bottom.join("w/gone"), "g").unwrap();
        fs::write(bottom.join("w/opq/old"), "o").unwrap();
        fs::create_dir_all(top.join("w/opq")).unwrap();
        fs::write(top.join("w/.wh.gone"), "").unwrap();
        fs::write(top.join("w/opq/.wh..wh..opq"), "").unwrap();
        fs::write(top.join("w/opq/new"), "n").unwrap();
        let lowers = Lowers::open(&[top, bottom]).unwrap();
        extract(&lowers, "/w", &out).unwrap();
        let mut found: Vec<String> = walk(&out.join("w"));
        found.sort();
        assert_eq!(found, ["keep", "opq", "opq/new"]);
        fs::remove_dir_all(&out).unwrap();
        extract(&lowers, "/w/k*", &out).unwrap();
        assert_eq!(walk(&out.join("w")), ["keep"]);
        assert!(matches!(extract(&lowers, "/w/gone", &out), Err(MergedError::Missing(_))));
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let n = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                v.extend(walk(&e.path()).into_iter().map(|c| format!("{n}/{c}")));
            }
            v.push(n);
        }
        v
    }
}
