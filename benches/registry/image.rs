//! The image every tool pulls and pushes: five gzip layers generated from a fixed seed and
//! written as an OCI image layout (image-spec `image-layout.md`), made once per shape and kept
//! between runs.
//!
//! Layers, bottom first: one large layer of files that alternate between random bytes
//! (incompressible) and text (about 3:1 under gzip); one of many small text files (one in ten
//! random); three small ones with configuration files, a binary, links, a whiteout and an app.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::{Compression, write::GzEncoder};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tar::{Builder, EntryType, Header};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Bytes of the large layer.
    pub big: u64,
    /// Files in the small-files layer.
    pub small_files: usize,
}

/// The reference the layout gives the image (`org.opencontainers.image.ref.name`).
pub const REF: &str = "1";

/// A generated layout and what it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    /// The OCI layout directory.
    pub dir: PathBuf,
    /// The layers' diff_ids, bottom first.
    pub diff_ids: Vec<String>,
    /// Entries per layer (files, directories, links, whiteouts).
    pub entries: Vec<usize>,
    /// Bytes of the layers' tars.
    pub unpacked: u64,
    /// Bytes of the gzip blobs.
    pub compressed: u64,
}

impl Image {
    /// The layout as skopeo, podman and umoci name it.
    pub fn oci_ref(&self) -> String {
        format!("{}:{REF}", self.dir.display())
    }
}

/// The layout for `shape` under `dir`, generated unless an earlier run left it complete.
pub fn ensure(dir: &Path, shape: Shape) -> Result<Image> {
    let layout = dir.join(format!("image-v1-{}-{}", shape.big, shape.small_files));
    let meta = layout.join("bench.json");
    if let Ok(text) = fs::read_to_string(&meta) {
        return serde_json::from_str(&text).with_context(|| format!("reading {}", meta.display()));
    }
    if layout.exists() {
        fs::remove_dir_all(&layout)?;
    }
    fs::create_dir_all(layout.join("blobs/sha256"))?;
    eprintln!("bench: generating the image in {}", layout.display());
    let plans: [(&str, Fill); 5] = [
        ("big", big_layer),
        ("small files", small_files),
        ("etc", etc_layer),
        ("links", links_layer),
        ("app", app_layer),
    ];
    let built: Vec<Result<Built>> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(i, &(name, fill))| {
                let layout = &layout;
                s.spawn(move || build_layer(layout, i as u64, shape, fill).with_context(|| format!("layer {name}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| anyhow::bail!("generator thread panicked"))).collect()
    });
    let built: Vec<Built> = built.into_iter().collect::<Result<_>>()?;
    write_image(&layout, &built)?;
    let image = Image {
        dir: layout.clone(),
        diff_ids: built.iter().map(|b| b.diff_id.clone()).collect(),
        entries: built.iter().map(|b| b.entries).collect(),
        unpacked: built.iter().map(|b| b.tar_size).sum(),
        compressed: built.iter().map(|b| b.size).sum(),
    };
    fs::write(&meta, serde_json::to_string_pretty(&image)?)?;
    Ok(image)
}

/// What writes a layer's entries.
type Fill = fn(&mut Layer, Shape) -> Result<()>;

/// A layer blob written to the layout.
struct Built {
    digest: String,
    size: u64,
    diff_id: String,
    tar_size: u64,
    entries: usize,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, hash: Sha256::new(), len: 0 }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex::encode(self.hash.finalize())), self.len)
    }
}

/// A layer being written: the tar, the generator, and how many entries went in.
pub struct Layer {
    tar: Builder<Hashing<GzEncoder<Hashing<BufWriter<File>>>>>,
    rng: Rng,
    entries: usize,
}

impl Layer {
    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_767_225_600); // 2026-01-01
        h
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = Self::header(EntryType::Directory, 0o755, 0);
        self.tar.append_data(&mut h, format!("{path}/"), io::empty())?;
        self.entries += 1;
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let mut h = Self::header(EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data)?;
        self.entries += 1;
        Ok(())
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(kind, 0o777, 0);
        self.tar.append_link(&mut h, path, target)?;
        self.entries += 1;
        Ok(())
    }

    fn random(&mut self, len: usize) -> Vec<u8> {
        self.rng.bytes(len)
    }

    fn text(&mut self, len: usize) -> Vec<u8> {
        self.rng.text(len)
    }
}

fn build_layer(layout: &Path, seed: u64, shape: Shape, fill: Fill) -> Result<Built> {
    let tmp = layout.join(format!("layer-{seed}.tmp"));
    let file = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let gz = GzEncoder::new(Hashing::new(file), Compression::default());
    let mut layer = Layer { tar: Builder::new(Hashing::new(gz)), rng: Rng(0x5eed_0000 + seed), entries: 0 };
    fill(&mut layer, shape)?;
    let entries = layer.entries;
    let (gz, diff_id, tar_size) = layer.tar.into_inner()?.finish();
    let (mut file, digest, size) = gz.finish()?.finish();
    file.flush()?;
    fs::rename(&tmp, blob_path(layout, &digest))?;
    Ok(Built { digest, size, diff_id, tar_size, entries })
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Writes `bytes` as a blob; its descriptor.
fn put_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    fs::write(blob_path(layout, &digest), bytes)?;
    Ok(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }))
}

/// The config, manifest, `index.json` and `oci-layout` of the image.
fn write_image(layout: &Path, layers: &[Built]) -> Result<()> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/usr/bin/tool"], "WorkingDir": "/app" },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>() },
        "history": (0..layers.len()).map(|i| serde_json::json!({
            "created": "2026-01-01T00:00:00Z",
            "created_by": format!("strata registry bench, layer {i}"),
        })).collect::<Vec<_>>(),
    });
    let config = put_blob(layout, "application/vnd.oci.image.config.v1+json", &serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let mut desc = put_blob(layout, "application/vnd.oci.image.manifest.v1+json", &serde_json::to_vec(&manifest)?)?;
    desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": REF });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [desc] });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Eight files in `/opt/big`, random and text in turn.
fn big_layer(l: &mut Layer, shape: Shape) -> Result<()> {
    l.dir("opt")?;
    l.dir("opt/big")?;
    let chunk = (shape.big / 8) as usize;
    for i in 0..8 {
        if i % 2 == 0 {
            let data = l.random(chunk);
            l.file(&format!("opt/big/blob-{i}.bin"), 0o644, &data)?;
        } else {
            let data = l.text(chunk);
            l.file(&format!("opt/big/text-{i}.txt"), 0o644, &data)?;
        }
    }
    Ok(())
}

/// `shape.small_files` files of 0–8 KiB, 100 to a directory under `/usr/share/bench`.
fn small_files(l: &mut Layer, shape: Shape) -> Result<()> {
    for d in ["usr", "usr/share", "usr/share/bench"] {
        l.dir(d)?;
    }
    for i in 0..shape.small_files {
        if i % 100 == 0 {
            l.dir(&format!("usr/share/bench/d{:03}", i / 100))?;
        }
        let len = (l.rng.next() % 8193) as usize;
        let data = if i % 10 == 9 { l.random(len) } else { l.text(len) };
        l.file(&format!("usr/share/bench/d{:03}/f{i:05}.txt", i / 100), 0o644, &data)?;
    }
    Ok(())
}

/// Fifty configuration files and a 1 MiB executable.
fn etc_layer(l: &mut Layer, _: Shape) -> Result<()> {
    for d in ["etc", "etc/bench", "usr", "usr/bin"] {
        l.dir(d)?;
    }
    for i in 0..50 {
        let data = l.text(2048);
        l.file(&format!("etc/bench/conf-{i:02}.conf"), 0o644, &data)?;
    }
    let tool = l.random(1 << 20);
    l.file("usr/bin/tool", 0o755, &tool)
}

/// Symlinks, a hard link, an empty directory, a whiteout and 2 MiB of data.
fn links_layer(l: &mut Layer, _: Shape) -> Result<()> {
    for d in ["usr", "usr/bin", "usr/share", "usr/share/bench", "usr/share/bench/d000", "var", "var/empty"] {
        l.dir(d)?;
    }
    l.link(EntryType::Symlink, "usr/bin/tool-link", "tool")?;
    l.link(EntryType::Symlink, "usr/bin/abs-link", "/usr/bin/tool")?;
    l.file("usr/share/bench/d000/.wh.f00000.txt", 0o644, &[])?;
    let data = l.random(2 << 20);
    l.file("usr/bin/helper", 0o755, &data)?;
    l.link(EntryType::Link, "usr/bin/helper-hard", "usr/bin/helper")
}

/// An application directory: 100 text files of 8 KiB and 4 MiB of data.
fn app_layer(l: &mut Layer, _: Shape) -> Result<()> {
    l.dir("app")?;
    l.dir("app/lib")?;
    for i in 0..100 {
        let data = l.text(8192);
        l.file(&format!("app/lib/module-{i:03}.py"), 0o644, &data)?;
    }
    let data = l.random(4 << 20);
    l.file("app/data.bin", 0o644, &data)?;
    l.file("app/README", 0o644, b"strata registry benchmark image\n")
}

/// splitmix64: fast, and the same bytes on every machine.
struct Rng(u64);

const WORDS: [&str; 32] = [
    "the",
    "layer",
    "image",
    "registry",
    "blob",
    "digest",
    "manifest",
    "config",
    "store",
    "union",
    "mount",
    "lower",
    "upper",
    "whiteout",
    "opaque",
    "tar",
    "gzip",
    "index",
    "tag",
    "push",
    "pull",
    "content",
    "address",
    "schema",
    "media",
    "type",
    "size",
    "annotation",
    "platform",
    "linux",
    "amd64",
    "error",
];

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Words from a small vocabulary with numbers mixed in, in lines.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 32);
        while v.len() < len {
            let r = self.next();
            v.extend_from_slice(WORDS[(r % 32) as usize].as_bytes());
            if r & 0x300 == 0 {
                let _ = write!(v, " {}", (r >> 16) % 100_000);
            }
            v.push(if r & 0xf000 == 0 { b'\n' } else { b' ' });
        }
        v.truncate(len);
        v
    }
}
