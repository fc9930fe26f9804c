//! eStargz: a gzip tar layer that is also seekable (stargz-snapshotter's format, readable by
//! every tool as an ordinary `tar+gzip` layer).
//!
//! ```text
//!  gzip member   gzip member        gzip member(s)      ...   gzip member           gzip member
//! ┌───────────┬───────────────┬──────────────────────┬─────┬──────────────────────┬───────────┐
//! │tar headers│ file payload  │ big file: chunk 1, 2…│     │ TOC: tar header +    │ footer:   │
//! │(+ padding)│ (one member)  │ (a member per chunk) │     │ stargz.index.json    │ TOC offset│
//! └───────────┴───────────────┴──────────────────────┴─────┴──────────────────────┴───────────┘
//! ```
//!
//! Every non-empty regular file's content starts a gzip member of its own (large files one per
//! chunk), so one file can be fetched with an HTTP `Range` request and inflated alone. The
//! table of contents (TOC, a JSON document in the last tar entry) lists every entry with its
//! metadata, the offset of its content member(s) and a digest of each chunk; the 51-byte
//! footer (an empty gzip member whose extra field holds the TOC's offset) finds the TOC. The
//! manifest records the TOC's digest in the layer annotation [`TOC_DIGEST_ANNOTATION`], which
//! makes every chunk verifiable from the manifest down.

pub mod toc;
mod write;

pub use toc::{Chunk, Entry, Toc, TocError, skeleton_tar};
pub use write::{Converted, write_estargz};

/// The TOC's name in the last tar entry.
pub const TOC_NAME: &str = "stargz.index.json";
/// The layer annotation holding the digest of the TOC JSON.
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
/// The layer annotation holding the size of the uncompressed tar.
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "io.containers.estargz.uncompressed-size";
/// The entry ending the files to prefetch.
pub const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// The entry saying nothing is to be prefetched.
pub const NO_PREFETCH_LANDMARK: &str = ".no.prefetch.landmark";
/// The footer's size in bytes.
pub const FOOTER_SIZE: u64 = 51;
/// Chunk size of large files (as stargz-snapshotter's default).
pub const CHUNK_SIZE: u64 = 4 << 20;

/// Names of the layer root that belong to the format (a conversion replaces them; a full pull
/// unpacks them as docker does, and so does a lazy one).
pub fn is_format_entry(name: &str) -> bool {
    matches!(name, TOC_NAME | PREFETCH_LANDMARK | NO_PREFETCH_LANDMARK)
}

/// The footer: an empty, stored gzip member whose extra field (`SG`, 22 bytes) says
/// `%016xSTARGZ` with the TOC's offset.
pub fn footer(toc_offset: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(FOOTER_SIZE as usize);
    // Magic, deflate, FEXTRA, mtime 0, xfl 0, OS unknown.
    f.extend_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff]);
    f.extend_from_slice(&26u16.to_le_bytes());
    f.extend_from_slice(b"SG");
    f.extend_from_slice(&22u16.to_le_bytes());
    f.extend_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
    // A final stored block of length 0, then CRC32 and ISIZE of nothing.
    f.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    f.extend_from_slice(&[0; 8]);
    debug_assert_eq!(f.len() as u64, FOOTER_SIZE);
    f
}

/// The TOC offset a footer records, or why these 51 bytes are not an eStargz footer.
pub fn parse_footer(f: &[u8]) -> Result<u64, TocError> {
    let bad = |why: &str| TocError::Footer(why.to_string());
    if f.len() != FOOTER_SIZE as usize {
        return Err(bad("short blob"));
    }
    if f[0..4] != [0x1f, 0x8b, 8, 4] {
        return Err(bad("no gzip member with an extra field at the end"));
    }
    let xlen = u16::from_le_bytes([f[10], f[11]]);
    if xlen != 26 || &f[12..14] != b"SG" || u16::from_le_bytes([f[14], f[15]]) != 22 || &f[32..38] != b"STARGZ" {
        return Err(bad("the extra field is not eStargz's"));
    }
    let hex = std::str::from_utf8(&f[16..32]).map_err(|_| bad("the TOC offset is not hex"))?;
    u64::from_str_radix(hex, 16).map_err(|_| bad("the TOC offset is not hex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_footer_is_an_empty_gzip_member_that_gives_back_its_offset() {
        let f = footer(0x1234_5678_9abc);
        assert_eq!(parse_footer(&f).unwrap(), 0x1234_5678_9abc);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&f[..]), &mut out).unwrap();
        assert!(out.is_empty());
        let mut bad = f.clone();
        bad[33] = b'x';
        assert!(parse_footer(&bad).is_err());
    }
}
