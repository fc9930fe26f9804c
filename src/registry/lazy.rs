//! Lazy pulls: an eStargz layer becomes usable once its table of contents is read.
//!
//! [`Puller`](super::pull::Puller) asks [`lazy_layer`] for each layer whose descriptor has the
//! TOC digest annotation: two `Range` requests read the footer and the TOC, the TOC is checked
//! against the annotation, and its *skeleton* (every entry, no content; see
//! [`crate::image::estargz::skeleton_tar`]) is unpacked as the layer. The layer's root records
//! where the blob is ([`LazySource`]); a mount of the layer asks [`factory`] for a
//! [`RegistryFetcher`], which fetches a file's chunks when it is first used and checks each
//! against its digest in the TOC.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::credentials::Credentials;
use super::error::{RegistryError, Result};
use super::tls::TlsOptions;
use crate::fs::lazy::{Fetcher, LAYER_XATTR};
use crate::image::digest::Digest;
use crate::image::estargz::{Chunk, FOOTER_SIZE, TOC_DIGEST_ANNOTATION, TOC_NAME, Toc, parse_footer, skeleton_tar};
use crate::image::spec::Descriptor;
use crate::image::store::{LayerMeta, WriteLock};
use crate::image::unpack::{self, Options};
use crate::sys::{fd, xattr};

/// Where a lazy layer's content is: kept on the layer's root ([`LAYER_XATTR`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LazySource {
    /// Registry host.
    pub registry: String,
    /// Repository.
    pub repository: String,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Where its TOC starts.
    pub toc_offset: u64,
    /// The TOC's digest (from the manifest).
    pub toc_digest: String,
    /// Verify TLS certificates.
    pub tls_verify: bool,
    /// Certificates dir.
    pub cert_dir: Option<PathBuf>,
    /// Credentials file (else the usual places).
    pub authfile: Option<PathBuf>,
    /// Fetch the whole layer in the background once mounted (`--lazy`, not `--lazy=only`).
    pub background: bool,
}

/// Whether `desc` is an eStargz layer that can be pulled lazily.
pub fn is_lazy_capable(desc: &Descriptor) -> bool {
    desc.annotations.contains_key(TOC_DIGEST_ANNOTATION) && desc.size > FOOTER_SIZE
}

/// Reads the footer and TOC of an eStargz layer and unpacks its skeleton as the layer
/// `diff_id`.
pub fn lazy_layer(client: &Client, lock: &WriteLock<'_>, src: LazySource, diff_id: &Digest) -> Result<()> {
    let what = format!("layer {}", src.digest);
    let bad = |detail: String| RegistryError::Protocol { what: what.clone(), detail };
    let foot = client.blob_range(&src.repository, &src.digest, src.size - FOOTER_SIZE, src.size)?;
    let toc_offset = parse_footer(&foot).map_err(|e| bad(e.to_string()))?;
    if toc_offset >= src.size - FOOTER_SIZE {
        return Err(bad(format!("the footer puts the TOC at {toc_offset}, past the blob's end")));
    }
    let member = client.blob_range(&src.repository, &src.digest, toc_offset, src.size - FOOTER_SIZE)?;
    let (toc, json, header) = Toc::from_member(&member, Some(&src.toc_digest)).map_err(|e| bad(e.to_string()))?;
    toc.chunks(toc_offset).map_err(|e| bad(e.to_string()))?;
    let skeleton = skeleton_tar(&toc, &header, &json).map_err(|e| bad(e.to_string()))?;
    let tmp = lock.layer_tmp()?;
    let root = fd::open_user_dir(tmp.path()).map_err(|e| bad(format!("layer dir: {e}")))?;
    let opts = Options { skeleton: true, ..Options::for_current_user() };
    let unpacked = unpack::unpack(&skeleton[..], root.as_fd(), opts)
        .map_err(|e| bad(format!("unpacking its table of contents: {e}")))?;
    let src = LazySource { toc_offset, ..src };
    let mark = serde_json::to_vec(&src).map_err(|e| bad(e.to_string()))?;
    xattr::set(root.as_fd(), None, OsStr::new(LAYER_XATTR), &mark, rustix::fs::XattrFlags::empty())
        .map_err(|e| bad(format!("marking the layer lazy: {e}")))?;
    let size = toc.entries.iter().filter(|e| e.kind == "reg").map(|e| e.size).sum();
    lock.commit_layer(tmp, diff_id, &LayerMeta { size, entries: unpacked.entries })?;
    Ok(())
}

/// The factory the filesystem uses for lazy layers (installed by the CLI at start).
pub fn factory(mark: &[u8], root: BorrowedFd<'_>) -> anyhow::Result<Arc<dyn Fetcher>> {
    let src: LazySource = serde_json::from_slice(mark).map_err(|e| anyhow::anyhow!("lazy layer mark: {e}"))?;
    let toc_file = File::from(
        fd::open_beneath(root, std::path::Path::new(TOC_NAME), rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
            .map_err(|e| anyhow::anyhow!("{TOC_NAME}: {e}"))?,
    );
    let mut json = Vec::new();
    toc_file.take(256 << 20).read_to_end(&mut json)?;
    let actual = Digest::sha256_of(&json);
    if actual.to_string() != src.toc_digest {
        anyhow::bail!("{TOC_NAME} is {actual}, the manifest says {}", src.toc_digest);
    }
    let toc: Toc = serde_json::from_slice(&json)?;
    let chunks = toc.chunks(src.toc_offset)?;
    let mut order = toc.prefetch();
    let prefetched: std::collections::HashSet<String> = order.iter().cloned().collect();
    order.extend(
        toc.entries
            .iter()
            .filter(|e| e.kind == "reg" && e.size > 0)
            .map(|e| crate::image::estargz::toc::clean_name(&e.name).to_string())
            .filter(|n| !prefetched.contains(n)),
    );
    Ok(Arc::new(RegistryFetcher { src, chunks, order, client: Mutex::new(None) }))
}

/// Fetches the files of one lazy layer from its registry.
pub struct RegistryFetcher {
    src: LazySource,
    chunks: HashMap<String, Vec<Chunk>>,
    /// Files in the order to fetch them in the background (prefetch landmark's first).
    order: Vec<String>,
    client: Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for RegistryFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryFetcher({}/{}@{})", self.src.registry, self.src.repository, self.src.digest)
    }
}

impl RegistryFetcher {
    fn client(&self) -> Result<Arc<Client>> {
        let mut c = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let creds = match &self.src.authfile {
            Some(f) => Credentials::with_files(vec![f.clone()]),
            None => Credentials::from_env(),
        };
        let auth = creds.get(&self.src.registry)?;
        let tls = TlsOptions { verify: self.src.tls_verify, cert_dir: self.src.cert_dir.clone() };
        let client = Arc::new(Client::connect(super::reference::api_host(&self.src.registry), &tls, auth)?);
        *c = Some(client.clone());
        Ok(client)
    }

    /// One chunk, fetched, inflated and checked against its digest.
    fn chunk(&self, c: &Chunk) -> std::result::Result<Vec<u8>, String> {
        let client = self.client().map_err(|e| e.to_string())?;
        let member =
            client.blob_range(&self.src.repository, &self.src.digest, c.offset, c.end).map_err(|e| e.to_string())?;
        // The chunk is the start of what the member inflates to: writers may go on in the same
        // member with the tar padding and the next entries' headers (Go's estargz does).
        let mut data = Vec::with_capacity(c.size as usize);
        flate2::read::MultiGzDecoder::new(&member[..])
            .take(c.size)
            .read_to_end(&mut data)
            .map_err(|e| format!("inflating bytes {}-{}: {e}", c.offset, c.end - 1))?;
        if data.len() as u64 != c.size {
            return Err(format!(
                "bytes {}-{} inflate to {} bytes, the TOC says {}",
                c.offset,
                c.end - 1,
                data.len(),
                c.size
            ));
        }
        let actual = Digest::sha256_of(&data);
        if actual.to_string() != c.digest {
            return Err(format!("chunk at {} is {actual}, the TOC says {}", c.file_offset, c.digest));
        }
        Ok(data)
    }
}

impl Fetcher for RegistryFetcher {
    fn fill(&self, file: &File, name: &[u8]) -> std::result::Result<(), Errno> {
        let name = String::from_utf8_lossy(name);
        let Some(chunks) = self.chunks.get(name.as_ref()) else {
            log::error!("lazy layer {}: {name}: not in its table of contents", self.src.digest);
            return Err(Errno::IO);
        };
        for c in chunks {
            let data = self.chunk(c).map_err(|e| {
                log::error!("lazy layer {}: /{name}: {e}", self.src.digest);
                Errno::IO
            })?;
            file.write_all_at(&data, c.file_offset).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
        }
        Ok(())
    }

    fn background(&self) -> Vec<String> {
        if self.src.background { self.order.clone() } else { Vec::new() }
    }
}
