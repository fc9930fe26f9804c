//! Writing an eStargz blob from a layer tar: every entry's tar bytes are kept as they are
//! (headers, extension headers, content), each regular file's content is cut into gzip members
//! of its own (one per [`CHUNK_SIZE`] of a large file), the files a workload reads first go to
//! the front with the prefetch landmark after them, and the TOC and footer end the blob. The
//! result is an ordinary `tar+gzip` layer for every other tool.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::toc::{Entry, Toc, clean_name};
use super::{CHUNK_SIZE, NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_NAME, footer};
use crate::image::digest::{Algorithm, Digest, Hasher};

/// What writing an eStargz blob produced.
#[derive(Debug)]
pub struct Converted {
    /// Digest of the uncompressed tar (the layer's new diff_id).
    pub diff_id: Digest,
    /// Digest of the TOC JSON (the manifest annotation).
    pub toc_digest: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Size of the blob.
    pub size: u64,
}

/// One tar entry of the input, by position.
struct Item {
    /// Where its first header block (extension headers included) starts.
    start: u64,
    /// Where its content starts.
    data: u64,
    /// Content size.
    size: u64,
    /// Its TOC entry (offsets filled in when written).
    entry: Entry,
}

/// Gzip members written one after another, with the uncompressed stream hashed.
struct Members<W: Write> {
    out: W,
    written: u64,
    current: Option<GzEncoder<Vec<u8>>>,
    tar: Hasher,
    tar_len: u64,
}

impl<W: Write> Members<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tar.update(bytes);
        self.tar_len += bytes.len() as u64;
        self.current.get_or_insert_with(|| GzEncoder::new(Vec::new(), Compression::default())).write_all(bytes)
    }

    /// Ends the member being written (if any); returns where the next one starts.
    fn cut(&mut self) -> io::Result<u64> {
        if let Some(enc) = self.current.take() {
            let bytes = enc.finish()?;
            self.out.write_all(&bytes)?;
            self.written += bytes.len() as u64;
        }
        Ok(self.written)
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Writes `tar` (an uncompressed layer tar in a file) as eStargz to `out`; the regular files
/// named in `prefetch` (in that order) go first, followed by the prefetch landmark.
pub fn write_estargz(tar: &File, prefetch: &[String], out: impl Write) -> io::Result<Converted> {
    let items = scan(tar)?;
    let (order, prefetched) = order(&items, prefetch);
    let mut m = Members { out, written: 0, current: None, tar: Hasher::new(Algorithm::Sha256), tar_len: 0 };
    let mut toc = Toc { version: 1, entries: Vec::new() };
    // The landmark ends what is to be prefetched; with nothing to prefetch it comes first.
    let landmark_at = prefetched;
    let landmark_name = if prefetched == 0 { NO_PREFETCH_LANDMARK } else { PREFETCH_LANDMARK };
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    for (n, &i) in order.iter().enumerate() {
        if n == landmark_at {
            landmark(&mut m, &mut toc, landmark_name)?;
        }
        let item = &items[i];
        let head = (item.data - item.start) as usize;
        let mut h = vec![0u8; head];
        tar.read_exact_at(&mut h, item.start)?;
        m.write(&h)?;
        if item.entry.kind != "reg" && item.size > 0 {
            // A global PAX header's records, or a link with data: bytes of the stream only.
            let mut data = vec![0u8; item.size as usize];
            tar.read_exact_at(&mut data, item.data)?;
            m.write(&data)?;
        }
        content(
            &mut m,
            &mut toc,
            item.entry.clone(),
            item.size,
            |off, b| tar.read_exact_at(b, item.data + off),
            &mut buf,
        )?;
        let pad = padding(item.size);
        m.write(&[0u8; 512][..pad])?;
    }
    if order.len() <= landmark_at {
        landmark(&mut m, &mut toc, landmark_name)?;
    }
    // The TOC: its tar entry and the end of the archive in one member.
    let toc_offset = m.cut()?;
    let json = serde_json::to_vec(&toc).map_err(io::Error::other)?;
    m.write(file_header(TOC_NAME, 0o444, json.len() as u64)?.as_bytes())?;
    m.write(&json)?;
    m.write(&[0u8; 512][..padding(json.len() as u64)])?;
    m.write(&[0u8; 1024])?;
    m.cut()?;
    m.raw(&footer(toc_offset))?;
    m.out.flush()?;
    Ok(Converted {
        diff_id: m.tar.finish(),
        toc_digest: Digest::sha256_of(&json),
        uncompressed_size: m.tar_len,
        size: m.written,
    })
}

/// The tar header of a regular file the format adds (root's, time 0).
fn file_header(name: &str, mode: u32, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    Ok(h)
}

fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// The landmark: a one-byte regular file (`0x0f`).
fn landmark<W: Write>(m: &mut Members<W>, toc: &mut Toc, name: &str) -> io::Result<()> {
    m.write(file_header(name, 0o644, 1)?.as_bytes())?;
    let entry = Entry {
        name: name.into(),
        kind: "reg".into(),
        size: 1,
        mode: 0o100644,
        modtime: "1970-01-01T00:00:00Z".into(),
        ..Entry::default()
    };
    let mut buf = vec![0u8; 1];
    content(
        m,
        toc,
        entry,
        1,
        |_, b| {
            b.copy_from_slice(&[0x0f]);
            Ok(())
        },
        &mut buf,
    )?;
    m.write(&[0u8; 511])
}

/// A regular file's content in members of its own (one per chunk), with its TOC entries;
/// other entries just get theirs.
fn content<W: Write>(
    m: &mut Members<W>,
    toc: &mut Toc,
    mut entry: Entry,
    size: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    buf: &mut [u8],
) -> io::Result<()> {
    if entry.kind != "reg" || size == 0 {
        if !entry.kind.is_empty() {
            toc.entries.push(entry);
        }
        return Ok(());
    }
    let mut whole = Hasher::new(Algorithm::Sha256);
    let first = toc.entries.len();
    let mut off = 0;
    while off < size {
        let n = (size - off).min(CHUNK_SIZE) as usize;
        let offset = m.cut()?;
        read(off, &mut buf[..n])?;
        m.write(&buf[..n])?;
        whole.update(&buf[..n]);
        let chunk_digest = Digest::sha256_of(&buf[..n]).to_string();
        let last = off + n as u64 == size;
        let chunk_size = if last { 0 } else { n as u64 };
        if off == 0 {
            entry.offset = offset;
            entry.chunk_size = chunk_size;
            entry.chunk_digest = chunk_digest;
            toc.entries.push(entry.clone());
        } else {
            toc.entries.push(Entry {
                name: entry.name.clone(),
                kind: "chunk".into(),
                offset,
                chunk_offset: off,
                chunk_size,
                chunk_digest,
                ..Entry::default()
            });
        }
        off += n as u64;
    }
    m.cut()?;
    toc.entries[first].digest = whole.finish().to_string();
    Ok(())
}

/// Every entry of the tar with where its bytes are and its TOC entry.
fn scan(mut tar: &File) -> io::Result<Vec<Item>> {
    io::Seek::seek(&mut tar, io::SeekFrom::Start(0))?;
    let mut items = Vec::new();
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, tar));
    let mut next_start = 0u64;
    for e in archive.entries()? {
        let mut e = e?;
        let data = e.raw_file_position();
        let size = e.size();
        let start = next_start;
        next_start = data + size + padding(size) as u64;
        let h = e.header().clone();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if super::is_format_entry(clean_name(&name)) {
            // An eStargz layer converted again: its old landmark and TOC go.
            continue;
        }
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "dir",
            tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            tar::EntryType::XGlobalHeader => "",
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("entry {name:?}: tar type {other:?} cannot be written as eStargz"),
                ));
            }
        };
        let type_bits = match kind {
            "dir" => 0o040000,
            "reg" | "hardlink" => 0o100000,
            "symlink" => 0o120000,
            "" => 0,
            "char" => 0o020000,
            "block" => 0o060000,
            _ => 0o010000,
        };
        let mut xattrs = std::collections::BTreeMap::new();
        if let Some(pax) = e.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(
                        String::from_utf8_lossy(key).into_owned(),
                        base64::engine::general_purpose::STANDARD.encode(ext.value_bytes()),
                    );
                }
            }
        }
        let mtime = h.mtime().unwrap_or(0);
        let entry = Entry {
            name,
            kind: kind.into(),
            size: if kind == "reg" { size } else { 0 },
            modtime: humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
                .to_string(),
            link_name: e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default(),
            mode: i64::from(h.mode().unwrap_or(0) & 0o7777) | type_bits,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            user_name: h.username().ok().flatten().unwrap_or_default().to_string(),
            group_name: h.groupname().ok().flatten().unwrap_or_default().to_string(),
            dev_major: h.device_major().ok().flatten().map(u64::from).unwrap_or(0),
            dev_minor: h.device_minor().ok().flatten().map(u64::from).unwrap_or(0),
            xattrs,
            ..Entry::default()
        };
        // Skip the content (read again later by position).
        io::copy(&mut e.by_ref().take(size), &mut io::sink())?;
        items.push(Item { start, data, size, entry });
    }
    Ok(items)
}

/// The order entries are written in: the files to prefetch first (each after the directories
/// above it), then the rest as they were; and how many entries the first part has.
fn order(items: &[Item], prefetch: &[String]) -> (Vec<usize>, usize) {
    let mut out = Vec::with_capacity(items.len());
    let mut taken: HashSet<usize> = HashSet::new();
    let index: std::collections::HashMap<&str, usize> =
        items.iter().enumerate().map(|(i, it)| (clean_name(&it.entry.name), i)).collect();
    for p in prefetch {
        let Some(&i) = index.get(p.as_str()) else { continue };
        if items[i].entry.kind != "reg" || taken.contains(&i) {
            continue;
        }
        let mut parents = Vec::new();
        let mut dir = std::path::Path::new(p.as_str()).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if let Some(&j) = index.get(d.to_str().unwrap_or_default())
                && !taken.contains(&j)
            {
                parents.push(j);
            }
            dir = d.parent();
        }
        for j in parents.into_iter().rev() {
            taken.insert(j);
            out.push(j);
        }
        taken.insert(i);
        out.push(i);
    }
    let prefetched = out.len();
    out.extend((0..items.len()).filter(|i| !taken.contains(i)));
    (out, prefetched)
}
