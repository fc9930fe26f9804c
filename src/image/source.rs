//! Where images are imported from: a directory (an OCI image layout) or a tar archive
//! (oci-archive, `docker save`), read by name with random access.
//!
//! A tar is indexed once (name → offset and size; symlinks and hardlinks between members are
//! followed inside the archive, as skopeo's docker archives need), then members are read with
//! `pread`, so several can be open at once. A gzip- or zstd-compressed archive is first
//! decompressed into the store's `tmp/`. Member names given by an archive's own JSON (docker
//! `manifest.json`) are checked: no absolute names, no `..`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Why a source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or directory the user named cannot be opened (the caller names it).
    #[error("{0}")]
    Open(#[source] io::Error),
    /// A member, or the archive while it is read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A member name that would leave the archive or layout.
    #[error("{source_path}: member name {name:?} is not allowed (absolute or with '..')")]
    BadName {
        /// The archive or layout.
        source_path: PathBuf,
        /// The name.
        name: String,
    },
    /// A member that is not there.
    #[error("{source_path}: {name} is missing")]
    Missing {
        /// The archive or layout.
        source_path: PathBuf,
        /// The member.
        name: String,
    },
}

type Result<T> = std::result::Result<T, SourceError>;

/// A directory or an indexed tar archive.
pub enum Source {
    /// An OCI layout (or an unpacked docker archive) on disk.
    Dir(PathBuf),
    /// A tar archive.
    Tar(TarSource),
}

/// An indexed tar archive.
pub struct TarSource {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
    /// Keeps a decompressed copy alive as long as the source.
    _tmp: Option<tempfile::NamedTempFile>,
}

enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

impl Source {
    /// Opens `path`: a directory, or a tar archive (possibly gzip/zstd compressed, decompressed
    /// into `tmp_dir`).
    pub fn open(path: &Path, tmp_dir: &Path) -> Result<Source> {
        let md = std::fs::metadata(path).map_err(SourceError::Open)?;
        let io_err = |source| SourceError::Io { path: path.to_path_buf(), source };
        if md.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let file = File::open(path).map_err(SourceError::Open)?;
        let (file, tmp) = decompressed(file, tmp_dir).map_err(io_err)?;
        let members = index_tar(&file).map_err(io_err)?;
        Ok(Source::Tar(TarSource { path: path.to_path_buf(), file, members, _tmp: tmp }))
    }

    /// The path the user gave.
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir(p) => p,
            Source::Tar(t) => &t.path,
        }
    }

    /// Whether member `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        match self {
            Source::Dir(p) => clean(name).map(|n| p.join(n).is_file()).unwrap_or(false),
            Source::Tar(t) => t.resolve(name).is_some(),
        }
    }

    /// Opens member `name` for reading; returns it with its size.
    pub fn open_member(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let clean_name = clean(name)
            .ok_or_else(|| SourceError::BadName { source_path: self.path().to_path_buf(), name: name.to_string() })?;
        let missing = || SourceError::Missing { source_path: self.path().to_path_buf(), name: name.to_string() };
        match self {
            Source::Dir(p) => {
                let path = p.join(&clean_name);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(source) => return Err(SourceError::Io { path, source }),
                };
                let size = file.metadata().map_err(|source| SourceError::Io { path, source })?.len();
                Ok((Box::new(file), size))
            }
            Source::Tar(t) => {
                let (offset, size) = t.resolve(&clean_name).ok_or_else(missing)?;
                Ok((Box::new(RangeReader { file: &t.file, pos: offset, end: offset + size }), size))
            }
        }
    }

    /// Reads member `name` whole, refusing more than `limit` bytes.
    pub fn read_member(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (r, size) = self.open_member(name)?;
        let io_err = |source| SourceError::Io { path: self.path().join(name), source };
        if size > limit {
            return Err(io_err(io::Error::other(format!("{size} bytes is too large for a JSON document"))));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(limit).read_to_end(&mut buf).map_err(io_err)?;
        Ok(buf)
    }
}

impl TarSource {
    /// Follows links between members (at most 16 hops) to a regular member.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = clean(name)?;
        for _ in 0..16 {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }
}

/// Normalises a member name: no leading `./` or `/`, no `.` components; `..` may only go back
/// within the name (a symlink target is resolved against its own directory this way).
fn clean(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn index_tar(file: &File) -> io::Result<HashMap<String, Member>> {
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = clean(&name) else { continue };
        let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
        let member = match (entry.header().entry_type(), link) {
            (tar::EntryType::Symlink, Some(target)) => {
                let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                match clean(&format!("{dir}/{target}")) {
                    Some(t) => Member::Link(t),
                    None => continue,
                }
            }
            (tar::EntryType::Link, Some(target)) => match clean(&target) {
                Some(t) => Member::Link(t),
                None => continue,
            },
            (t, _) if t.is_file() => Member::File { offset: entry.raw_file_position(), size: entry.size() },
            _ => continue,
        };
        members.insert(name, member);
    }
    Ok(members)
}

/// A compressed archive is decompressed into a temp file; a plain one is used as it is.
fn decompressed(file: File, tmp_dir: &Path) -> io::Result<(File, Option<tempfile::NamedTempFile>)> {
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0)?;
    let mut reader = BufReader::new(&file);
    let mut decoder: Box<dyn Read + '_> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(&mut reader)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::with_buffer(&mut reader)?),
        _ => {
            drop(reader);
            return Ok((file, None));
        }
    };
    let mut tmp = tempfile::Builder::new().prefix("archive-").tempfile_in(tmp_dir)?;
    io::copy(&mut decoder, &mut tmp)?;
    let copy = tmp.reopen()?;
    Ok((copy, Some(tmp)))
}

/// Reads `[pos, end)` of a file with `pread`.
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive member is truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Wraps `r` in the decompressor its first bytes call for (gzip, zstd, or none) and says which.
pub fn sniff<'r, R: BufRead + 'r>(mut r: R) -> io::Result<(Box<dyn Read + 'r>, Compression)> {
    let head = r.fill_buf()?;
    Ok(match head {
        [0x1f, 0x8b, ..] => (Box::new(flate2::bufread::MultiGzDecoder::new(r)), Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => (Box::new(zstd::stream::read::Decoder::with_buffer(r)?), Compression::Zstd),
        _ => (Box::new(r), Compression::None),
    })
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_member_names() {
        assert_eq!(clean("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(clean("a/../x.tar").as_deref(), Some("x.tar"));
        assert_eq!(clean("../x"), None);
        assert_eq!(clean("/etc/passwd"), None);
    }

    #[test]
    fn reads_members_through_links_of_the_archive() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_cksum();
        b.append_data(&mut h, "abc.tar", &b"abc"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "id/layer.tar", "../abc.tar").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let src = Source::open(&path, dir.path()).unwrap();
        assert_eq!(src.read_member("id/layer.tar", 10).unwrap(), b"abc");
        assert!(src.exists("./abc.tar"));
        assert!(matches!(src.open_member("../abc.tar"), Err(SourceError::BadName { .. })));
        assert!(matches!(src.open_member("nope"), Err(SourceError::Missing { .. })));
    }
}
