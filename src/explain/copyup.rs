//! Why an entry of a container's upper layer is there (SEMANTICS.md "Copy-up"): a copy of an
//! image entry made on its first change (data changed, or metadata only), a directory copied up
//! as the parent of a change, a renamed directory (`overlay.redirect`), a replacement of an
//! image entry by one of another type, or something new.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::Result;
use super::merge::{Version, View, redirect_source};
use super::stack::{Kind, Node, Stack};

/// How a container's upper entry relates to the image below it.
#[derive(Clone, Debug)]
pub enum Origin<'a> {
    /// The image has nothing at this path: the container made it.
    New,
    /// A copy of the image's entry: `data_changed` (regular files whose bytes differ) and the
    /// metadata that differs (`mode 0644 -> 0600`, ...).
    CopiedUp {
        /// The image's version.
        from: Version<'a>,
        /// Whether the bytes differ (regular files).
        data_changed: bool,
        /// Metadata that differs, in words.
        meta: Vec<String>,
    },
    /// A directory renamed in the container: its lower content is read from `from`.
    Renamed {
        /// The merged path it was renamed from.
        from: PathBuf,
    },
    /// The container replaced the image's entry by one of another type.
    Replaced {
        /// The image's version.
        from: Version<'a>,
    },
}

/// Why the upper entry `upper` (merged path `path`) exists, given `image`: the view of the
/// stack without its upper layer.
pub fn origin<'a>(stack: &'a Stack, image: &View<'a>, path: &Path, upper: &Version<'a>) -> Result<Origin<'a>> {
    if let Kind::Dir(d) = &upper.node.kind
        && let Some(target) = &d.redirect
    {
        let parent = path.parent().unwrap_or(Path::new(""));
        return Ok(Origin::Renamed { from: redirect_source(parent, target) });
    }
    let Some(below) = image.get(path) else { return Ok(Origin::New) };
    let from = below.shown().clone();
    if from.node.type_word() != upper.node.type_word() {
        return Ok(Origin::Replaced { from });
    }
    let data_changed = upper.node.is_file() && !same_bytes(stack, upper, &from)?;
    let meta = meta_changes(from.node, upper.node);
    Ok(Origin::CopiedUp { from, data_changed, meta })
}

/// Metadata of `new` that differs from `old`, in words.
fn meta_changes(old: &Node, new: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if old.mode != new.mode {
        out.push(format!("mode {:04o} -> {:04o}", old.mode, new.mode));
    }
    if (old.uid, old.gid) != (new.uid, new.gid) {
        out.push(format!("owner {}:{} -> {}:{}", old.uid, old.gid, new.uid, new.gid));
    }
    if old.is_file() && old.size != new.size {
        out.push(format!("size {} -> {} bytes", old.size, new.size));
    }
    if old.mtime != new.mtime {
        out.push("modification time".into());
    }
    if let (Kind::Symlink(a), Kind::Symlink(b)) = (&old.kind, &new.kind)
        && a != b
    {
        out.push(format!("target {} -> {}", a.to_string_lossy(), b.to_string_lossy()));
    }
    out
}

/// Whether two regular files hold the same bytes.
fn same_bytes(stack: &Stack, a: &Version<'_>, b: &Version<'_>) -> Result<bool> {
    if a.node.size != b.node.size {
        return Ok(false);
    }
    let (la, lb) = (stack.layer(a.layer), stack.layer(b.layer));
    let (mut fa, mut fb) = (la.open_file(&a.path)?, lb.open_file(&b.path)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| la.read_error(&a.path, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| lb.read_error(&b.path, e))?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::stack::tests::info;
    use crate::explain::stack::{Layer, Stack};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tells_copy_ups_from_new_entries() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        std::fs::create_dir_all(low.join("dir")).unwrap();
        std::fs::create_dir_all(up.join("dir")).unwrap();
        for (name, low_data, up_data) in [("data", "a", "b"), ("meta", "same", "same"), ("new", "", "n")] {
            if !low_data.is_empty() {
                std::fs::write(low.join(name), low_data).unwrap();
            }
            std::fs::write(up.join(name), up_data).unwrap();
        }
        std::fs::set_permissions(up.join("meta"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(low.join("was-file"), "x").unwrap();
        std::fs::create_dir(up.join("was-file")).unwrap();
        let layers = [("1", low), ("upper", up)].map(|(n, p)| Layer::read(info(n, &p)).unwrap());
        let stack = Stack { layers: layers.into(), name: "t".into() };
        let (view, image) = (View::of(&stack), View::build(&stack, 1, |_, _| {}));
        let origin = |p: &str| origin(&stack, &image, Path::new(p), view.get(Path::new(p)).unwrap().shown()).unwrap();
        assert!(matches!(origin("data"), Origin::CopiedUp { data_changed: true, .. }));
        let Origin::CopiedUp { data_changed: false, meta, .. } = origin("meta") else { panic!("meta") };
        assert_eq!(meta.first().map(String::as_str), Some("mode 0644 -> 0600"));
        assert!(matches!(origin("new"), Origin::New));
        assert!(matches!(origin("was-file"), Origin::Replaced { .. }));
        assert!(matches!(origin("dir"), Origin::CopiedUp { data_changed: false, .. }));
    }
}
