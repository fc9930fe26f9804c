//! COPY and ADD without a container: the sources are written into a fresh upper dir (the
//! step's layer, once committed) at their destination, as docker places them — a directory's
//! contents into the destination, a file to `dest` or `dest/NAME` when `dest` ends in `/` or
//! is a directory — with `--chown`/`--chmod`, modes, symlinks and mtimes kept; parent
//! directories take the image's metadata when they exist there. ADD unpacks local tar
//! archives (plain, gzip, zstd; bzip2 and xz through the system's `bzip2`/`xz`) with the
//! layer unpacker.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::context::{Context, Source};
use crate::image::{source, unpack};

/// A file operation that failed; names the path.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The host file system.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The context.
    #[error(transparent)]
    Context(#[from] super::context::ContextError),
    /// An archive ADD unpacks.
    #[error("{path}: unpacking: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, FilesError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io { path: path.to_path_buf(), source }
}

/// Where files go and how they are owned.
pub struct Target<'a> {
    /// The upper dir being filled.
    pub upper: &'a Path,
    /// The image's layer dirs, top first (for parent directories' metadata).
    pub lowers: &'a [PathBuf],
    /// `--chown` (uid, gid); none: 0:0.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub mode: Option<u32>,
}

impl Target<'_> {
    /// The host path of the image path `p` (absolute) in the upper dir, parents made.
    fn place(&self, p: &str) -> Result<PathBuf> {
        let mut host = self.upper.to_path_buf();
        let mut image_path = String::new();
        let names: Vec<&str> = p.split('/').filter(|n| !n.is_empty() && *n != ".").collect();
        for (i, n) in names.iter().enumerate() {
            host.push(n);
            image_path.push('/');
            image_path.push_str(n);
            if i + 1 < names.len() && fs::symlink_metadata(&host).is_err() {
                fs::create_dir(&host).map_err(io_err(&host))?;
                let (mode, uid, gid) = self.lower_meta(&image_path).unwrap_or((0o755, 0, 0));
                fs::set_permissions(&host, fs::Permissions::from_mode(mode & 0o7777)).map_err(io_err(&host))?;
                chown(&host, uid, gid)?;
            }
        }
        Ok(host)
    }

    /// The mode and owner of `image_path` in the topmost layer that has it.
    fn lower_meta(&self, image_path: &str) -> Option<(u32, u32, u32)> {
        let rel = image_path.trim_start_matches('/');
        self.lowers.iter().find_map(|l| fs::symlink_metadata(l.join(rel)).ok()).map(|m| (m.mode(), m.uid(), m.gid()))
    }

    /// Whether `image_path` is a directory in the image.
    pub fn is_dir_in_image(&self, image_path: &str) -> bool {
        let rel = image_path.trim_start_matches('/');
        rel.is_empty()
            || self.lowers.iter().find_map(|l| fs::symlink_metadata(l.join(rel)).ok()).is_some_and(|m| m.is_dir())
    }

    fn owner(&self) -> (u32, u32) {
        self.owner.unwrap_or((0, 0))
    }
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io_err(p))
}

/// Copies `src` to the image path `dest` (a directory's contents into `dest`).
pub fn copy(ctx: &Context, src: &Source, dest: &str, dest_is_dir: bool, t: &Target<'_>) -> Result<()> {
    let md = fs::symlink_metadata(&src.path).map_err(io_err(&src.path))?;
    if md.is_dir() {
        let host = t.place(&format!("{dest}/x"))?;
        let dir = host.parent().unwrap_or(t.upper).to_path_buf();
        if dir != t.upper {
            make_dir_like(&dir, &md, t)?;
        }
        return copy_children(ctx, &src.path, &src.rel, &dir, t);
    }
    let name = src.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let to = if dest_is_dir { format!("{dest}/{name}") } else { dest.to_string() };
    let host = t.place(&to)?;
    copy_entry(ctx, &src.path, &src.rel, &host, t)
}

fn make_dir_like(dir: &Path, md: &fs::Metadata, t: &Target<'_>) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        fs::create_dir(dir).map_err(io_err(dir))?;
    }
    let mode = t.mode.unwrap_or(md.mode() & 0o7777);
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err(dir))?;
    let (uid, gid) = t.owner();
    chown(dir, uid, gid)
}

fn copy_children(ctx: &Context, from: &Path, rel: &str, to: &Path, t: &Target<'_>) -> Result<()> {
    for (name, child_rel) in ctx.children(from, rel)? {
        if ctx.excluded(&child_rel) && !fs::symlink_metadata(from.join(&name)).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        copy_entry(ctx, &from.join(&name), &child_rel, &to.join(&name), t)?;
    }
    Ok(())
}

/// One entry (a directory with what it holds) at `to`.
fn copy_entry(ctx: &Context, from: &Path, rel: &str, to: &Path, t: &Target<'_>) -> Result<()> {
    let md = fs::symlink_metadata(from).map_err(io_err(from))?;
    let (uid, gid) = t.owner();
    if md.file_type().is_symlink() {
        let target = fs::read_link(from).map_err(io_err(from))?;
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(&target, to).map_err(io_err(to))?;
        return chown(to, uid, gid);
    }
    if md.is_dir() {
        make_dir_like(to, &md, t)?;
        copy_children(ctx, from, rel, to, t)?;
    } else if md.is_file() {
        let mode = t.mode.unwrap_or(md.mode() & 0o7777);
        return copy_file(from, to, mode, (uid, gid), md.modified().map_err(io_err(from))?);
    } else {
        return Ok(());
    }
    let mtime = md.modified().map_err(io_err(from))?;
    fs::File::open(to).and_then(|f| f.set_modified(mtime)).map_err(io_err(to))
}

/// The regular file `from` as `to`, through one fd: content (`copy_file_range` where it can),
/// owner (as root), then mode (after the owner: a chown clears setuid), then mtime.
fn copy_file(from: &Path, to: &Path, mode: u32, (uid, gid): (u32, u32), mtime: std::time::SystemTime) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = fs::File::open(from).map_err(io_err(from))?;
    let _ = fs::remove_file(to);
    let mut dst =
        fs::OpenOptions::new().write(true).create_new(true).mode(mode & 0o777).open(to).map_err(io_err(to))?;
    std::io::copy(&mut src, &mut dst).map_err(io_err(to))?;
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::fchown(&dst, Some(uid), Some(gid)).map_err(io_err(to))?;
    }
    dst.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err(to))?;
    dst.set_modified(mtime).map_err(io_err(to))
}

/// Whether the file at `path` is a tar archive, compressed or not.
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else { return false };
    let n = f.read(&mut head).unwrap_or(0);
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || (n >= 262 && &h[257..262] == b"ustar")
}

/// Unpacks the archive at `path` into the image directory `dest`.
pub fn unpack_archive(path: &Path, dest: &str, t: &Target<'_>) -> Result<()> {
    let host = t.place(&format!("{dest}/x"))?;
    let dir = host.parent().unwrap_or(t.upper).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let bad = |reason: String| FilesError::Archive { path: path.to_path_buf(), reason };
    let mut head = [0u8; 6];
    let n = fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(io_err(path))?;
    let tool = match &head[..n] {
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Some("xz"),
        _ => None,
    };
    let root = fs::File::open(&dir).map_err(io_err(&dir))?;
    let opts = unpack::Options::for_current_user();
    match tool {
        Some(tool) => {
            let file = fs::File::open(path).map_err(io_err(path))?;
            let mut child = Command::new(tool)
                .arg("-dc")
                .stdin(file)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| bad(format!("running {tool}: {e}")))?;
            let out = child.stdout.take().ok_or_else(|| bad(format!("{tool} gave no output")))?;
            let r = unpack::unpack(out, root.as_fd(), opts).map_err(|e| bad(e.to_string()));
            let status = child.wait().map_err(|e| bad(e.to_string()))?;
            r?;
            if !status.success() {
                return Err(bad(format!("{tool} failed: {status}")));
            }
        }
        None => {
            let r = BufReader::new(fs::File::open(path).map_err(io_err(path))?);
            let (tar, _) = sniff(r).map_err(io_err(path))?;
            unpack::unpack(tar, root.as_fd(), opts).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(())
}

fn sniff<'r>(r: impl BufRead + 'r) -> std::io::Result<(Box<dyn Read + 'r>, source::Compression)> {
    source::sniff(r)
}

/// Makes the image directory `dir` (and its parents) in the upper dir.
pub fn make_dir(dir: &str, t: &Target<'_>) -> Result<()> {
    let host = t.place(&format!("{}/x", dir.trim_end_matches('/')))?;
    let d = host.parent().unwrap_or(t.upper);
    if fs::symlink_metadata(d).is_err() {
        fs::create_dir(d).map_err(io_err(d))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(io_err(d))?;
    }
    Ok(())
}

/// Writes the heredoc `h` of COPY/ADD as the file `dir/NAME` (mode 0644), as BuildKit does:
/// `<<-` removes the lines' leading tabs; an unquoted name expands `$VAR` in the content, quotes
/// being ordinary characters and the escape character escaping the next one (`\$X` is `$X`,
/// `\\` is `\`).
pub fn heredoc(
    h: &super::parser::Heredoc,
    dir: &Path,
    escape: char,
    vars: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<super::remote::Fetched, String> {
    use sha2::Digest as _;
    let mut content = if h.chomp { super::parser::chomp(&h.content) } else { h.content.clone() };
    if h.expand {
        let lex = super::shell::Lexer { skip_quotes: true, ..super::shell::Lexer::new(escape) };
        content = lex.word(&content, vars).map_err(|e| format!("heredoc {}: {e}", h.name))?;
    }
    let path = dir.join(&h.name);
    fs::write(&path, &content).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(|e| format!("{}: {e}", path.display()))?;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(content.as_bytes())));
    Ok(super::remote::Fetched { path, name: h.name.clone(), digest })
}
