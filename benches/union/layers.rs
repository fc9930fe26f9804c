//! The layers every workload runs on, generated once per size and kept under the bench dir
//! (`<dir>/layers/<set>/`, complete when its `.done` marker exists), so repeated runs measure
//! the filesystems, not the generator.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A set of layers, top first, as `lowerdir=` takes them.
#[derive(Clone, Debug)]
pub struct LayerSet {
    /// The set's name (its kind and sizes).
    pub name: String,
    /// The lower dirs, top first.
    pub lowers: Vec<PathBuf>,
}

impl LayerSet {
    /// `lowerdir=` of the set (top first, `:` separated).
    pub fn lowerdir(&self) -> String {
        self.lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
    }
}

/// Cheap deterministic bytes: text-like (compresses about 3:1, like real layers) or random.
pub struct Filler {
    state: u64,
}

impl Filler {
    /// A filler seeded with `seed`.
    pub fn new(seed: u64) -> Filler {
        Filler { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with random bytes.
    pub fn random(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Fills `buf` with words from a small vocabulary: compressible like source and config files.
    pub fn text(&mut self, buf: &mut [u8]) {
        const WORDS: [&[u8]; 16] = [
            b"layer ",
            b"union ",
            b"copy-up ",
            b"whiteout ",
            b"opaque ",
            b"lower ",
            b"upper ",
            b"merged ",
            b"fn main() {\n",
            b"}\n",
            b"let x = 42;\n",
            b"0x7f3a9c ",
            b"return ",
            b"#include ",
            b"config\n",
            b"path ",
        ];
        let mut i = 0;
        while i < buf.len() {
            let r = self.next();
            let tok = (r >> 8).to_le_bytes();
            let w: &[u8] = if r & 0x30 == 0 {
                &tok[..5] // an incompressible token now and then
            } else {
                WORDS[(r & 15) as usize]
            };
            let n = w.len().min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    }
}

/// Writes a file of `size` bytes of random data in 1 MiB blocks.
pub fn big_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut fill = Filler::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill.random(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// A whiteout in the kernel's format: a character device 0/0.
pub fn whiteout(path: &Path) -> Result<()> {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::CharacterDevice, 0o000.into(), 0)
        .with_context(|| format!("whiteout {}", path.display()))
}

fn small(path: &Path, fill: &mut Filler, len: usize) -> Result<()> {
    let mut buf = vec![0u8; len];
    fill.text(&mut buf);
    fs::write(path, &buf).with_context(|| format!("writing {}", path.display()))
}

/// The generator's cache: one dir per set, rebuilt when its marker is missing.
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache under `dir/layers`.
    pub fn new(dir: &Path) -> Cache {
        Cache { root: dir.join("layers") }
    }

    /// The set `name`, made by `make` into a fresh dir unless already complete.
    fn set(&self, name: &str, make: impl FnOnce(&Path) -> Result<Vec<PathBuf>>) -> Result<LayerSet> {
        let dir = self.root.join(name);
        let done = dir.join(".done");
        if let Ok(list) = fs::read_to_string(&done) {
            return Ok(LayerSet { name: name.into(), lowers: list.lines().map(PathBuf::from).collect() });
        }
        if dir.exists() {
            super::sh(&format!("rm -rf '{}'", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        eprintln!("bench: generating layers {name} (once)");
        let lowers = make(&dir)?;
        let list: String = lowers.iter().map(|p| format!("{}\n", p.display())).collect();
        super::sh("sync")?;
        fs::write(&done, list)?;
        Ok(LayerSet { name: name.into(), lowers })
    }

    /// One lower file of `size` bytes (`big`) under a small top layer.
    pub fn big(&self, size: u64) -> Result<LayerSet> {
        self.set(&format!("big-{size}"), |dir| {
            let (top, bottom) = (dir.join("top"), dir.join("bottom"));
            fs::create_dir_all(top.join("etc"))?;
            fs::create_dir_all(&bottom)?;
            fs::write(top.join("etc/motd"), "top\n")?;
            big_file(&bottom.join("big"), size, 1)?;
            Ok(vec![top, bottom])
        })
    }

    /// `files` small files in 100 dirs over 3 layers: the middle layer shadows 10% of the bottom
    /// one, the top whites out 2% of it; symlinks now and then. The merged view has `files` files.
    pub fn tree(&self, files: usize) -> Result<LayerSet> {
        self.set(&format!("tree-{files}"), |dir| {
            let per_dir = files / 100;
            let (base, mid_new, top_new) = (per_dir * 6 / 10, per_dir * 2 / 10, per_dir - per_dir * 8 / 10);
            let wh = per_dir / 50;
            let layers: Vec<PathBuf> = ["3", "2", "1"].iter().map(|l| dir.join(l)).collect();
            let mut fill = Filler::new(7);
            for d in 0..100 {
                let sub = format!("usr/lib/d{d:02}");
                for l in &layers {
                    fs::create_dir_all(l.join(&sub))?;
                }
                // bottom: base + wh files (the extra ones whited out by the top layer)
                for i in 0..base + wh {
                    small(&layers[2].join(&sub).join(format!("f{i:05}")), &mut fill, 64 + (i % 7) * 100)?;
                }
                for i in 0..per_dir / 10 {
                    small(&layers[1].join(&sub).join(format!("f{i:05}")), &mut fill, 128)?;
                }
                for i in 0..mid_new {
                    let n = base + wh + i;
                    if i % 20 == 0 {
                        symlink(format!("f{:05}", i), layers[1].join(&sub).join(format!("f{n:05}")))?;
                    } else {
                        small(&layers[1].join(&sub).join(format!("f{n:05}")), &mut fill, 200)?;
                    }
                }
                for i in 0..top_new {
                    small(&layers[0].join(&sub).join(format!("f{:05}", base + wh + mid_new + i)), &mut fill, 300)?;
                }
                for i in base..base + wh {
                    whiteout(&layers[0].join(&sub).join(format!("f{i:05}")))?;
                }
            }
            Ok(layers)
        })
    }

    /// One directory `big/` of `entries` names over 2 layers (half each) plus `whiteouts`
    /// whiteouts in the top layer hiding names of the bottom one.
    pub fn bigdir(&self, entries: usize, whiteouts: usize) -> Result<LayerSet> {
        self.set(&format!("bigdir-{entries}-{whiteouts}"), |dir| {
            let (top, bottom) = (dir.join("top/big"), dir.join("bottom/big"));
            fs::create_dir_all(&top)?;
            fs::create_dir_all(&bottom)?;
            let half = entries / 2;
            for i in 0..half + whiteouts {
                File::create(bottom.join(format!("entry-{i:06}")))?;
            }
            for i in half + whiteouts..entries + whiteouts {
                File::create(top.join(format!("entry-{i:06}")))?;
            }
            for i in 0..whiteouts {
                whiteout(&top.join(format!("entry-{:06}", i * (half / whiteouts.max(1)))))?;
            }
            Ok(vec![dir.join("top"), dir.join("bottom")])
        })
    }

    /// `files` lower files to delete, in 10 dirs, under an empty top layer.
    pub fn doomed(&self, files: usize) -> Result<LayerSet> {
        self.set(&format!("doomed-{files}"), |dir| {
            let (top, bottom) = (dir.join("top"), dir.join("bottom"));
            fs::create_dir_all(&top)?;
            let mut fill = Filler::new(3);
            for d in 0..10 {
                let sub = bottom.join(format!("d{d}"));
                fs::create_dir_all(&sub)?;
                for i in 0..files / 10 {
                    small(&sub.join(format!("f{i:05}")), &mut fill, 100)?;
                }
            }
            Ok(vec![top, bottom])
        })
    }

    /// Lower files of the given sizes, named by size (`f4096`), and a 4 KiB `warm-up` file
    /// under an empty top layer, in
    /// `root` (a different filesystem, e.g. an XFS reflink image, when given).
    pub fn sized(&self, sizes: &[u64], root: Option<&Path>) -> Result<LayerSet> {
        let tag = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
        let cache = root.map(Cache::new);
        let cache = cache.as_ref().unwrap_or(self);
        cache.set(&format!("sized-{tag}-w"), |dir| {
            let (top, bottom) = (dir.join("top"), dir.join("bottom"));
            fs::create_dir_all(&top)?;
            fs::create_dir_all(&bottom)?;
            for (i, &s) in sizes.iter().enumerate() {
                big_file(&bottom.join(format!("f{s}")), s, 10 + i as u64)?;
            }
            big_file(&bottom.join("warm-up"), 4096, 9)?;
            Ok(vec![top, bottom])
        })
    }

    /// A plain dir of `files` files adding up to about `bytes` (a layer's content for commit and
    /// unpack), compressible like real layers.
    pub fn payload(&self, files: usize, bytes: u64) -> Result<PathBuf> {
        let set = self.set(&format!("payload-{files}-{bytes}"), |dir| {
            let root = dir.join("payload");
            let mut fill = Filler::new(11);
            let avg = (bytes / files as u64).max(1) as usize;
            let mut buf = vec![0u8; avg * 2];
            for i in 0..files {
                let sub = root.join(format!("opt/app/m{:03}", i / 500));
                if i % 500 == 0 {
                    fs::create_dir_all(&sub)?;
                }
                // sizes spread from 0 to 2×avg; every 8th file random (binaries, images)
                let len = (i * 7919) % (avg * 2);
                if i % 8 == 0 {
                    fill.random(&mut buf[..len]);
                } else {
                    fill.text(&mut buf[..len]);
                }
                fs::write(sub.join(format!("file{i:06}.dat")), &buf[..len])?;
            }
            Ok(vec![root])
        })?;
        Ok(set.lowers[0].clone())
    }
}
