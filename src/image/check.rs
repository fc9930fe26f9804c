//! `strata check`: whether the store is whole — what a crash at any moment must not break.
//!
//! - every blob's content hashes to its name;
//! - every entry of `index.json` leads to a manifest and a config that parse, and to every layer
//!   blob and unpacked layer the image needs;
//! - every unpacked layer is what its blob unpacks to: the blob decompresses to a tar whose
//!   digest is the layer's diff_id, and unpacking it again (into `tmp/`, by the same code as a
//!   load or pull) gives the same tree — types, modes, owners, sizes, content, symlink targets,
//!   device numbers, xattrs and hard links (times are not compared);
//! - nothing is left that `prune` would not remove: a layer dir without its metadata is
//!   reported; unreachable blobs and layers, and the metadata of a layer whose writer was
//!   stopped before its dir was put in place, are counted (prune removes them).
//!
//! A lazy layer (pulled with `--lazy`: its blob stays in the registry) is checked for being
//! there; its files are checked against their TOC digests as they are fetched.
//!
//! [`repair`] removes what is broken: bad blobs, bad layers, and the index entries of the images
//! they break (an image is complete or not listed). Every walk of a layer is by fd.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::digest::{Algorithm, Digest, HashingReader};
use super::source::sniff;
use super::spec::Descriptor;
use super::store::{self, Store, StoreError, WriteLock};
use super::unpack::{self, Options};
use crate::sys::{fd, xattr};

/// Something broken, and what repairing it removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// One line naming the thing and what is wrong.
    pub what: String,
    /// What `--repair` does about it.
    pub fix: Fix,
}

/// What repairing a problem removes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fix {
    /// A blob whose content is not its digest.
    Blob(Digest),
    /// An unpacked layer (by diff_id hex) that is not what its blob unpacks to, or half there.
    Layer(String),
    /// The index entries of this manifest, which cannot be used.
    Image(Digest),
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Blobs hashed.
    pub blobs: usize,
    /// Index entries checked.
    pub images: usize,
    /// Unpacked layers compared with their blobs.
    pub layers: usize,
    /// Blobs and layers no image reaches (what `prune` removes).
    pub unreachable: usize,
    /// What is broken.
    pub problems: Vec<Problem>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Checks `store` (the caller holds its lock); `deep` re-unpacks every layer to compare it.
pub fn check(store: &Store, deep: bool) -> Result<Report, StoreError> {
    let mut r = Report::default();
    let bad_blobs = check_blobs(store, &mut r)?;
    let index = store.index()?;
    let mut layers_needed: BTreeSet<(Digest, Digest)> = BTreeSet::new();
    for desc in &index.manifests {
        r.images += 1;
        let name = desc.annotations.get("org.opencontainers.image.ref.name").cloned().unwrap_or_default();
        let label = if name.is_empty() { desc.digest.to_string() } else { format!("{name} ({})", desc.digest.short()) };
        let broken = |r: &mut Report, why: String| {
            r.problems.push(Problem { what: format!("image {label}: {why}"), fix: Fix::Image(desc.digest.clone()) })
        };
        let img = match store.load_image(desc) {
            Ok(img) => img,
            Err(e) => {
                broken(&mut r, e.to_string());
                continue;
            }
        };
        if img.manifest.layers.len() != img.config.rootfs.diff_ids.len() {
            broken(&mut r, "its manifest and config list different numbers of layers".into());
            continue;
        }
        for (blob, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
            if store.is_lazy_layer(diff_id) && !store.has_blob(&blob.digest) {
                // A lazy layer stands for its blob until fetched: its files are checked against
                // the digests of their TOC as they arrive.
                continue;
            }
            if !store.has_blob(&blob.digest) || bad_blobs.contains(&blob.digest) {
                broken(&mut r, format!("layer blob {} is missing or damaged", blob.digest));
            } else if !store.has_layer(diff_id) {
                broken(&mut r, format!("unpacked layer {diff_id} is missing"));
            } else {
                layers_needed.insert((blob.digest.clone(), diff_id.clone()));
            }
        }
    }
    check_layer_files(store, &mut r)?;
    if deep {
        for (blob, diff_id) in &layers_needed {
            r.layers += 1;
            if let Some(why) = compare_layer(store, blob, diff_id)? {
                r.problems.push(Problem {
                    what: format!("unpacked layer {diff_id}: {why}"),
                    fix: Fix::Layer(diff_id.hex().to_string()),
                });
            }
        }
    }
    let (blobs, layers) = store.unreachable()?;
    r.unreachable += blobs.len() + layers.len();
    Ok(r)
}

/// Hashes every blob; the ones that do not match their name.
fn check_blobs(store: &Store, r: &mut Report) -> Result<BTreeSet<Digest>, StoreError> {
    let dir = store.root().join("blobs/sha256");
    let mut bad = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(bad) };
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        r.blobs += 1;
        let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
            // Not a blob (a stopped writer's temp file, say): counted as unreachable, as `prune`
            // removes it.
            continue;
        };
        let path = entry.path();
        let f = File::open(&path).map_err(io_err(&path))?;
        let (got, _) = HashingReader::new(BufReader::new(f), Algorithm::Sha256).finish().map_err(io_err(&path))?;
        if got != digest {
            r.problems.push(Problem {
                what: format!("blob {digest}: its content hashes to {got}"),
                fix: Fix::Blob(digest.clone()),
            });
            bad.insert(digest);
        }
    }
    Ok(bad)
}

/// A layer dir and its metadata come and go together: the metadata is written first and the
/// dir renamed into place last, so metadata alone is a leftover; a dir alone is damage.
fn check_layer_files(store: &Store, r: &mut Report) -> Result<(), StoreError> {
    let dir = store.root().join("layers");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let names: BTreeSet<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for n in &names {
        if n.starts_with('.') {
            // The temp name of a metadata file being written when its writer stopped: counted as
            // unreachable, as `prune` removes it.
            continue;
        }
        let (hex, is_meta) = match n.strip_suffix(".json") {
            Some(h) => (h, true),
            None => (n.as_str(), false),
        };
        let other = if is_meta { hex.to_string() } else { format!("{hex}.json") };
        match (names.contains(&other), is_meta) {
            (true, _) => {}
            // A writer stopped between the two (the dir is the last step, so no image uses it):
            // what `prune` removes.
            (false, true) => r.unreachable += 1,
            (false, false) => r
                .problems
                .push(Problem { what: format!("layer {hex} has no metadata"), fix: Fix::Layer(hex.to_string()) }),
        }
    }
    Ok(())
}

/// Decompresses and re-unpacks `blob` into a scratch dir and compares it with the layer.
fn compare_layer(store: &Store, blob: &Digest, diff_id: &Digest) -> Result<Option<String>, StoreError> {
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let scratch = tempfile::Builder::new().prefix("check-").tempdir_in(&tmp).map_err(io_err(&tmp))?;
    let path = store.blob_path(blob);
    let f = File::open(&path).map_err(io_err(&path))?;
    let (tar, _) = sniff(BufReader::new(f)).map_err(io_err(&path))?;
    let mut hashing = HashingReader::new(tar, diff_id.algorithm());
    let root = fd::open_user_dir(scratch.path()).map_err(|e| io_err(scratch.path())(e.into()))?;
    if let Err(e) = unpack::unpack(&mut hashing, root.as_fd(), Options::for_current_user()) {
        return Ok(Some(format!("its blob {blob} does not unpack: {e}")));
    }
    let (got, _) = hashing.finish().map_err(io_err(&path))?;
    if got != *diff_id {
        return Ok(Some(format!("its blob {blob} decompresses to {got}")));
    }
    let layer = store.layer_path(diff_id);
    let ours = fd::open_user_dir(&layer).map_err(|e| io_err(&layer)(e.into()))?;
    let mut cmp = Compare::default();
    cmp.dirs(ours.as_fd(), root.as_fd(), Path::new("/")).map_err(|e| io_err(&layer)(e.into()))?;
    Ok(cmp.first)
}

/// Walks two trees side by side; the first difference, as one line.
#[derive(Default)]
struct Compare {
    first: Option<String>,
    /// Inode of a hard-linked file → its first path, on each side.
    links: [HashMap<u64, PathBuf>; 2],
}

fn names(dir: BorrowedFd<'_>) -> crate::sys::Result<BTreeSet<OsString>> {
    let fd = fd::reopen(dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
    Ok(fd::read_dir(fd)?.into_iter().map(|e| e.name).collect())
}

fn xattrs(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Vec<(OsString, Option<Vec<u8>>)> {
    let mut keys = xattr::list(dir, name).unwrap_or_default();
    keys.sort();
    keys.into_iter().map(|k| (k.clone(), xattr::get(dir, name, &k).ok().flatten())).collect()
}

fn same_content(a: OwnedFd, b: OwnedFd) -> io::Result<bool> {
    let (mut a, mut b) = (BufReader::new(File::from(a)), BufReader::new(File::from(b)));
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

impl Compare {
    /// Records the first difference; `Ok` so that a walk can `return` it.
    fn differ(&mut self, path: &Path, what: &str) -> crate::sys::Result<()> {
        if self.first.is_none() {
            self.first = Some(format!("{}: {what}", path.display()));
        }
        Ok(())
    }

    fn dirs(&mut self, a: BorrowedFd<'_>, b: BorrowedFd<'_>, at: &Path) -> crate::sys::Result<()> {
        if xattrs(a, None) != xattrs(b, None) {
            self.differ(at, "xattrs differ")?;
        }
        let (na, nb) = (names(a)?, names(b)?);
        for name in na.union(&nb) {
            if self.first.is_some() {
                return Ok(());
            }
            let path = at.join(name);
            let (sa, sb) = match (fd::try_stat_at(a, name)?, fd::try_stat_at(b, name)?) {
                (Some(x), Some(y)) => (x, y),
                (Some(_), None) => return self.differ(&path, "not in the layer's blob"),
                _ => return self.differ(&path, "missing"),
            };
            let kind = FileType::from_raw_mode(sa.st_mode);
            if kind != FileType::from_raw_mode(sb.st_mode) {
                return self.differ(&path, "type differs");
            }
            if sa.st_mode & 0o7777 != sb.st_mode & 0o7777 {
                return self.differ(&path, &format!("mode {:o}, not {:o}", sa.st_mode & 0o7777, sb.st_mode & 0o7777));
            }
            if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid) {
                return self.differ(&path, "owner differs");
            }
            if kind != FileType::Symlink && xattrs(a, Some(name)) != xattrs(b, Some(name)) {
                return self.differ(&path, "xattrs differ");
            }
            match kind {
                FileType::Directory => {
                    let (da, db) = (fd::open_dir_read(a, Path::new(name))?, fd::open_dir_read(b, Path::new(name))?);
                    self.dirs(da.as_fd(), db.as_fd(), &path)?;
                }
                FileType::Symlink if fd::readlink_at(a, name)? != fd::readlink_at(b, name)? => {
                    self.differ(&path, "symlink target differs")?
                }
                FileType::CharacterDevice | FileType::BlockDevice if sa.st_rdev != sb.st_rdev => {
                    self.differ(&path, "device number differs")?
                }
                FileType::RegularFile => self.file(a, b, name, (&sa, &sb), &path)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        a: BorrowedFd<'_>,
        b: BorrowedFd<'_>,
        name: &OsStr,
        (sa, sb): (&Stat, &Stat),
        path: &Path,
    ) -> crate::sys::Result<()> {
        if sa.st_size != sb.st_size {
            return self.differ(path, &format!("{} bytes, not {}", sa.st_size, sb.st_size));
        }
        if sa.st_nlink > 1 || sb.st_nlink > 1 {
            let first_a = self.links[0].entry(sa.st_ino).or_insert_with(|| path.to_path_buf()).clone();
            let first_b = self.links[1].entry(sb.st_ino).or_insert_with(|| path.to_path_buf()).clone();
            if first_a != first_b {
                return self.differ(path, "hard links differ");
            }
        }
        let open = |d| fd::open_at(d, name, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty());
        if !same_content(open(a)?, open(b)?).map_err(|e| crate::sys::errno_of(&e))? {
            return self.differ(path, "content differs");
        }
        Ok(())
    }
}

/// Removes what `report` found broken; one line per thing removed.
pub fn repair(lock: &WriteLock<'_>, report: &Report) -> Result<Vec<String>, StoreError> {
    let store = lock.store();
    let mut fixes: Vec<&Fix> = report.problems.iter().map(|p| &p.fix).collect();
    fixes.sort();
    fixes.dedup();
    let mut done = Vec::new();
    let mut index = store.index()?;
    let mut index_changed = false;
    // Images that use a removed blob or layer go too: an image is complete or not listed.
    let mut gone_blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut gone_layers: BTreeSet<String> = BTreeSet::new();
    for fix in &fixes {
        match fix {
            Fix::Blob(d) => {
                store::remove_path(&store.blob_path(d))?;
                gone_blobs.insert(d.clone());
                done.push(format!("removed blob {d}"));
            }
            Fix::Layer(hex) => {
                lock.remove_layer(hex)?;
                gone_layers.insert(hex.clone());
                done.push(format!("removed unpacked layer sha256:{hex}"));
            }
            _ => {}
        }
    }
    let listed: Vec<Descriptor> = index.manifests.clone();
    for desc in listed {
        let named = |d: &Descriptor| fixes.iter().any(|f| matches!(f, Fix::Image(x) if *x == d.digest));
        let uses_gone = store.load_image(&desc).is_ok_and(|img| {
            img.manifest.layers.iter().any(|l| gone_blobs.contains(&l.digest))
                || img.config.rootfs.diff_ids.iter().any(|d| gone_layers.contains(d.hex()))
                || gone_blobs.contains(&img.manifest.config.digest)
        }) || gone_blobs.contains(&desc.digest);
        if named(&desc) || uses_gone {
            store::remove_image(&mut index, &desc.digest);
            index_changed = true;
            let name = desc.annotations.get("org.opencontainers.image.ref.name").cloned().unwrap_or_default();
            done.push(format!("removed image {} {name}", desc.digest).trim_end().to_string());
        }
    }
    if index_changed {
        lock.save_index(&index)?;
    }
    Ok(done)
}
