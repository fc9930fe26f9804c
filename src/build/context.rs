//! The build context: a directory (or a tar read into a temp directory), its `.dockerignore`,
//! and the sources COPY/ADD take from it — each kept inside the context (`../x` and symlinks
//! that lead out are refused), wildcards in the last name expanded — with a digest of what
//! they hold (content, mode, owner, type, link target; never mtime) for the build cache.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::dockerignore::{self, Ignore};
use super::sums::Sums;

/// A source that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// `../x`, or a symlink leading out.
    #[error("{0}: outside the build context")]
    Outside(String),
    /// Nothing there (or all of it ignored).
    #[error("{0}: no such file or directory in the build context")]
    Missing(String),
    /// Reading the context.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ContextError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io { path: path.to_path_buf(), source }
}

/// A build context.
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    _tmp: Option<tempfile::TempDir>,
}

/// One source of a COPY/ADD: its path on the host and its path relative to the context.
#[derive(Debug, Clone)]
pub struct Source {
    /// The host path (inside the context).
    pub path: PathBuf,
    /// Relative to the context root.
    pub rel: String,
}

impl Context {
    /// The directory `dir`.
    pub fn dir(dir: &Path) -> Result<Context> {
        let root = dir.canonicalize().map_err(io_err(dir))?;
        let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Ignore::parse(&t),
            Err(_) => Ignore::default(),
        };
        Ok(Context { root, ignore, _tmp: None })
    }

    /// A tar stream, unpacked into a temp directory under `tmp_parent`.
    pub fn tar(input: impl Read, tmp_parent: &Path) -> Result<Context> {
        std::fs::create_dir_all(tmp_parent).map_err(io_err(tmp_parent))?;
        let tmp = tempfile::Builder::new().prefix("context-").tempdir_in(tmp_parent).map_err(io_err(tmp_parent))?;
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        // A context is not a layer: tar's own checks (no `..`, nothing through symlinks) suffice.
        archive.unpack(tmp.path()).map_err(io_err(tmp.path()))?;
        let mut c = Context::dir(tmp.path())?;
        c._tmp = Some(tmp);
        Ok(c)
    }

    /// The context root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `rel` is excluded by `.dockerignore`.
    pub fn excluded(&self, rel: &str) -> bool {
        self.ignore.excludes(rel)
    }

    /// The sources `src` names (wildcards in its last name expanded), checked to be inside.
    pub fn sources(&self, src: &str) -> Result<Vec<Source>> {
        let rel = clean(src).ok_or_else(|| ContextError::Outside(src.to_string()))?;
        let (dir, last) = match rel.rsplit_once('/') {
            Some((d, l)) => (d.to_string(), l.to_string()),
            None => (String::new(), rel.clone()),
        };
        let names = if last.contains(['*', '?', '[']) {
            let parent = self.inside(&dir, src)?;
            let mut names: Vec<String> = std::fs::read_dir(&parent)
                .map_err(io_err(&parent))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| dockerignore::name_match(&last, n))
                .collect();
            names.sort();
            names
        } else {
            vec![last]
        };
        let mut out = Vec::new();
        for n in names {
            let rel = if dir.is_empty() { n } else { format!("{dir}/{n}") };
            if !rel.is_empty() && self.excluded(&rel) {
                continue;
            }
            out.push(Source { path: self.inside(&rel, src)?, rel });
        }
        if out.is_empty() {
            return Err(ContextError::Missing(src.to_string()));
        }
        Ok(out)
    }

    /// The host path of `rel`, its symlinks followed, refused if it leaves the context.
    fn inside(&self, rel: &str, src: &str) -> Result<PathBuf> {
        let p = self.root.join(rel);
        let real = p.canonicalize().map_err(|_| ContextError::Missing(src.to_string()))?;
        if !real.starts_with(&self.root) {
            return Err(ContextError::Outside(src.to_string()));
        }
        Ok(real)
    }

    /// A digest of what `sources` hold: each path's type, mode, owner, size, content or link
    /// target, directories walked in name order, ignored paths left out.
    pub fn digest(&self, sources: &[Source], sums: &Sums) -> Result<String> {
        let mut h = Sha256::new();
        for s in sources {
            self.digest_path(&s.path, &s.rel, sums, &mut h)?;
        }
        Ok(hex::encode(h.finalize()))
    }

    fn digest_path(&self, path: &Path, rel: &str, sums: &Sums, h: &mut Sha256) -> Result<()> {
        let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
        h.update(format!("{rel}\0{:o}\0{}:{}\0", md.mode(), md.uid(), md.gid()).as_bytes());
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(path).map_err(io_err(path))?;
            h.update(t.as_os_str().as_encoded_bytes());
        } else if md.is_file() {
            h.update(sums.get_or(&md, || content_sum(path)).map_err(io_err(path))?);
        } else if md.is_dir() {
            for (name, child) in self.children(path, rel)? {
                self.digest_path(&path.join(&name), &child, sums, h)?;
            }
        }
        h.update(b"\n");
        Ok(())
    }

    /// The entries of the directory `path` (at `rel`) a build sees, by name: (name, rel).
    pub fn children(&self, path: &Path, rel: &str) -> Result<Vec<(std::ffi::OsString, String)>> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(io_err(path))?;
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let child = if rel.is_empty() {
                    n.to_string_lossy().into_owned()
                } else {
                    format!("{rel}/{}", n.to_string_lossy())
                };
                (n, child)
            })
            .filter(|(_, child)| !self.excluded(child) || self.ignore.may_include_under(child))
            .collect())
    }
}

/// The sha256 of the file at `path`.
fn content_sum(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// `src` as a clean relative path (`./a/../b` → `b`, `.` → ``); `None` if it climbs out.
pub fn clean(src: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_inside() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("ctx");
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("a.txt"), "a").unwrap();
        std::fs::write(dir.join("b.txt"), "b").unwrap();
        std::fs::write(outer.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("out")).unwrap();
        std::fs::write(dir.join(".dockerignore"), "b.txt\n").unwrap();
        let c = Context::dir(&dir).unwrap();
        let rels = |s: &str| c.sources(s).map(|v| v.into_iter().map(|s| s.rel).collect::<Vec<_>>());
        assert_eq!(rels("*.txt").unwrap(), ["a.txt"]);
        assert_eq!(rels("./d/../a.txt").unwrap(), ["a.txt"]);
        assert!(matches!(c.sources("../secret"), Err(ContextError::Outside(_))));
        assert!(matches!(c.sources("out"), Err(ContextError::Outside(_))));
        assert!(matches!(c.sources("b.txt"), Err(ContextError::Missing(_))));
        let before = c.digest(&c.sources("a.txt").unwrap(), &Sums::none()).unwrap();
        let f = std::fs::File::options().write(true).open(dir.join("a.txt")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(c.digest(&c.sources("a.txt").unwrap(), &Sums::none()).unwrap(), before);
        std::fs::write(dir.join("a.txt"), "A").unwrap();
        assert_ne!(c.digest(&c.sources("a.txt").unwrap(), &Sums::none()).unwrap(), before);
    }
}
