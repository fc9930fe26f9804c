//! The table of contents of an eStargz layer: its JSON form, reading it from its gzip member,
//! where each file's content is in the blob, and the tar of metadata only (a *skeleton*) that
//! a lazy layer is unpacked from.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::TOC_NAME;
use crate::image::digest::Digest;

/// The PAX record of a skeleton entry that stands for a regular file whose content is not
/// here yet: its value is the file's size. Honoured only when unpacking a skeleton.
pub const LAZY_SIZE_PAX: &str = "STRATA.lazy.size";

/// Why a TOC cannot be used; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TocError {
    /// The last 51 bytes are not an eStargz footer.
    #[error("not an eStargz layer: {0}")]
    Footer(String),
    /// The TOC member does not hold a TOC.
    #[error("table of contents: {0}")]
    Bad(String),
    /// The TOC's digest differs from the manifest's annotation.
    #[error("table of contents digest is {actual}, the manifest says {expected}")]
    Digest { expected: String, actual: Digest },
}

/// The TOC document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Toc {
    /// Always 1.
    pub version: u32,
    /// Every tar entry and chunk but the TOC itself, in blob order.
    pub entries: Vec<Entry>,
}

/// One TOC entry (a tar entry, or a further chunk of a regular file).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The path as stored in the tar.
    pub name: String,
    /// `dir`, `reg`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `chunk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of a regular file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// RFC 3339 modification time (empty: unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub modtime: String,
    /// Target of a symlink or hard link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    /// Permission bits (and the type bits, as Go writes them).
    #[serde(default)]
    pub mode: i64,
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Owner's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// Group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// Device numbers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev_major: u64,
    /// Device numbers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev_minor: u64,
    /// Extended attributes, values base64 (Go's encoding of bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Digest of a regular file's whole content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Offset in the blob of the gzip member holding this content.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Offset of this chunk in the file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_offset: u64,
    /// Size of this chunk (0: up to the end of the file).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_size: u64,
    /// Digest of this chunk's content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chunk_digest: String,
    /// Kept from stargz (unused).
    #[serde(rename = "NumLink", default, skip_serializing_if = "is_zero")]
    pub num_link: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One piece of a regular file's content in the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where its gzip member starts in the blob.
    pub offset: u64,
    /// Where its gzip member ends (the next member with content, or the TOC).
    pub end: u64,
    /// Where the chunk goes in the file.
    pub file_offset: u64,
    /// Its size once inflated.
    pub size: u64,
    /// Its digest.
    pub digest: String,
}

/// A path in TOC form (no `./`, no leading or trailing `/`).
pub fn clean_name(name: &str) -> &str {
    let mut n = name;
    while let Some(rest) = n.strip_prefix("./") {
        n = rest;
    }
    n.trim_start_matches('/').trim_end_matches('/')
}

impl Toc {
    /// Reads the TOC from its gzip member (the bytes from the footer's offset to the footer),
    /// checking its digest against the manifest annotation when there is one. Returns the TOC,
    /// the JSON it was read from and the TOC's own tar header.
    pub fn from_member(member: &[u8], expected: Option<&str>) -> Result<(Toc, Vec<u8>, tar::Header), TocError> {
        let bad = |why: String| TocError::Bad(why);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(member));
        let mut entries = archive.entries().map_err(|e| bad(e.to_string()))?;
        let mut entry = entries
            .next()
            .ok_or_else(|| bad("the TOC member holds no tar entry".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let path = entry.path_bytes().into_owned();
        if clean_name(&String::from_utf8_lossy(&path)) != TOC_NAME {
            return Err(bad(format!("the last entry is {:?}, not {TOC_NAME}", String::from_utf8_lossy(&path))));
        }
        let header = entry.header().clone();
        let mut json = Vec::new();
        entry.by_ref().take(256 << 20).read_to_end(&mut json).map_err(|e| bad(e.to_string()))?;
        if let Some(expected) = expected {
            let actual = Digest::sha256_of(&json);
            if actual.to_string() != expected {
                return Err(TocError::Digest { expected: expected.to_string(), actual });
            }
        }
        let toc: Toc = serde_json::from_slice(&json).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if toc.version != 1 {
            return Err(bad(format!("version {} (only 1 is known)", toc.version)));
        }
        Ok((toc, json, header))
    }

    /// Where each regular file's content is: its chunks by file name (hard links are not
    /// listed: they share their target's content). `toc_offset` ends the last member.
    pub fn chunks(&self, toc_offset: u64) -> Result<HashMap<String, Vec<Chunk>>, TocError> {
        let mut starts: Vec<u64> = self.entries.iter().filter(|e| e.offset > 0).map(|e| e.offset).collect();
        starts.push(toc_offset);
        starts.sort_unstable();
        starts.dedup();
        let end_of = |offset: u64| -> Result<u64, TocError> {
            let i = starts.partition_point(|s| *s <= offset);
            starts
                .get(i)
                .copied()
                .ok_or_else(|| TocError::Bad(format!("content offset {offset} is past the TOC at {toc_offset}")))
        };
        let mut out: HashMap<String, Vec<Chunk>> = HashMap::new();
        let mut sizes: HashMap<String, u64> = HashMap::new();
        for e in &self.entries {
            let name = clean_name(&e.name).to_string();
            match e.kind.as_str() {
                "reg" => {
                    sizes.insert(name.clone(), e.size);
                    if e.size == 0 {
                        continue;
                    }
                }
                "chunk" => {}
                _ => continue,
            }
            let file_size =
                *sizes.get(&name).ok_or_else(|| TocError::Bad(format!("chunk of {name:?} before its file")))?;
            let size = if e.chunk_size > 0 { e.chunk_size } else { file_size.saturating_sub(e.chunk_offset) };
            if e.offset == 0 || e.chunk_offset + size > file_size || e.chunk_digest.is_empty() {
                return Err(TocError::Bad(format!("entry {name:?}: content without offset, digest or bounds")));
            }
            let chunk = Chunk {
                offset: e.offset,
                end: end_of(e.offset)?,
                file_offset: e.chunk_offset,
                size,
                digest: e.chunk_digest.clone(),
            };
            out.entry(name).or_default().push(chunk);
        }
        for (name, chunks) in &out {
            let covered: u64 = chunks.iter().map(|c| c.size).sum();
            if covered != sizes[name] {
                return Err(TocError::Bad(format!("the chunks of {name:?} cover {covered} of {} bytes", sizes[name])));
            }
        }
        Ok(out)
    }

    /// The regular files named before the prefetch landmark (those a workload reads first).
    pub fn prefetch(&self) -> Vec<String> {
        let Some(end) = self.entries.iter().position(|e| clean_name(&e.name) == super::PREFETCH_LANDMARK) else {
            return Vec::new();
        };
        self.entries[..end]
            .iter()
            .filter(|e| e.kind == "reg" && e.size > 0)
            .map(|e| clean_name(&e.name).into())
            .collect()
    }
}

/// A tar with every entry of the TOC but no content: a regular file with content carries its
/// size in [`LAZY_SIZE_PAX`] instead. Unpacked as a skeleton, it gives the layer's whole tree
/// (names, modes, owners, times, xattrs, links, whiteouts) with files to be filled on read —
/// the same tree a full pull unpacks, the TOC itself included (`toc_header`, `json`).
pub fn skeleton_tar(toc: &Toc, toc_header: &tar::Header, json: &[u8]) -> Result<Vec<u8>, TocError> {
    let mut b = tar::Builder::new(Vec::new());
    for e in &toc.entries {
        let name = clean_name(&e.name);
        if e.kind == "chunk" || name == TOC_NAME || name.is_empty() && e.kind != "dir" {
            continue;
        }
        let bad = |why: String| TocError::Bad(format!("entry {name:?}: {why}"));
        let mut h = tar::Header::new_ustar();
        let kind = match e.kind.as_str() {
            "dir" => tar::EntryType::Directory,
            "reg" => tar::EntryType::Regular,
            "symlink" => tar::EntryType::Symlink,
            "hardlink" => tar::EntryType::Link,
            "char" => tar::EntryType::Char,
            "block" => tar::EntryType::Block,
            "fifo" => tar::EntryType::Fifo,
            other => return Err(bad(format!("unknown type {other:?}"))),
        };
        h.set_entry_type(kind);
        h.set_mode((e.mode & 0o7777) as u32);
        h.set_uid(u64::from(e.uid));
        h.set_gid(u64::from(e.gid));
        h.set_size(0);
        h.set_mtime(0);
        let _ = h.set_username(&e.user_name);
        let _ = h.set_groupname(&e.group_name);
        if !e.modtime.is_empty() {
            let t = humantime::parse_rfc3339_weak(&e.modtime).map_err(|err| bad(format!("modtime: {err}")))?;
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            h.set_mtime(secs);
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev_major as u32).map_err(|err| bad(err.to_string()))?;
            h.set_device_minor(e.dev_minor as u32).map_err(|err| bad(err.to_string()))?;
        }
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let path = if kind == tar::EntryType::Directory { format!("{name}/") } else { name.to_string() };
        if h.set_path(&path).is_err() {
            pax.push(("path".into(), path.clone().into_bytes()));
            h.set_path("long-name").map_err(|err| bad(err.to_string()))?;
        }
        if !e.link_name.is_empty() {
            let link = if kind == tar::EntryType::Link { clean_name(&e.link_name) } else { e.link_name.as_str() };
            if h.set_link_name(link).is_err() {
                pax.push(("linkpath".into(), link.as_bytes().to_vec()));
                h.set_link_name("long-link").map_err(|err| bad(err.to_string()))?;
            }
        }
        for (k, v) in &e.xattrs {
            let value =
                base64::engine::general_purpose::STANDARD.decode(v).map_err(|err| bad(format!("xattr {k}: {err}")))?;
            pax.push((format!("SCHILY.xattr.{k}"), value));
        }
        if kind == tar::EntryType::Regular && e.size > 0 {
            pax.push((LAZY_SIZE_PAX.into(), e.size.to_string().into_bytes()));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|err| bad(err.to_string()))?;
        }
        h.set_cksum();
        b.append(&h, std::io::empty()).map_err(|err| bad(err.to_string()))?;
    }
    let mut h = toc_header.clone();
    h.set_size(json.len() as u64);
    h.set_cksum();
    b.append(&h, json).map_err(|e| TocError::Bad(e.to_string()))?;
    b.into_inner().map_err(|e| TocError::Bad(e.to_string()))
}
