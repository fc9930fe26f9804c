//! Lazy images: `strata convert --estargz` writes eStargz layers, `strata pull --lazy` reads
//! only their tables of contents, and a mount fetches each file's chunks from the registry the
//! first time it is used, checking every chunk against the TOC — against a real
//! `docker-registry` whose log says what was fetched.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use common::registry::{Registry, RegistryOptions, require_registry};
use common::store::{Store, require_tool};

fn tools() -> bool {
    common::require_root("lazy image tests mount images") && require_registry() && require_tool("skopeo")
}

/// A registry holding the fixture converted to eStargz as `HOST/fx/lazy:1`; the source store.
fn converted(prefetch: &[&str]) -> (Registry, Store, String) {
    let reg = Registry::start(RegistryOptions::new());
    let src = Store::new();
    src.load_fixture("oci-multi");
    let name = format!("{}/fx/lazy:1", reg.host());
    let mut args = vec!["convert", "--estargz"];
    for p in prefetch {
        args.extend(["--prefetch", p]);
    }
    args.extend(["oci-multi", &name]);
    src.ok(&args);
    src.ok(&["push", &name]);
    (reg, src, name)
}

/// The manifest the registry has for `name`.
fn manifest(name: &str) -> Value {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every blob GET the registry completed for the image's layers, as (digest, offset, bytes).
fn layer_gets(reg: &Registry, m: &Value) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        for r in reg.blob_gets(d) {
            out.push((d.to_string(), r.offset.unwrap_or(0), r.written));
        }
    }
    out
}

/// An image mounted read-only for the test's life.
struct Mounted<'a> {
    store: &'a Store,
    mnt: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(store: &'a Store, image: &str) -> Mounted<'a> {
        let mnt = store.path("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        store.ok(&["image", "mount", image, mnt.to_str().unwrap()]);
        Mounted { store, mnt }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let out = self.store.run(&["image", "umount", self.mnt.to_str().unwrap()]);
        if !out.status.success() {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Everything a user sees of a tree: per path, type, mode, owner, size, link target, content
/// digest (reading every file).
fn walk(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "d".to_string()
            } else if ft.is_symlink() {
                format!("l {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                format!("f {} {}", md.len(), sha256(&std::fs::read(&p).unwrap()))
            } else {
                "o".to_string()
            };
            out.insert(rel, format!("{what} {:o} {}:{}", md.permissions().mode(), md.uid(), md.gid()));
        }
    }
    out
}

#[test]
fn converted_layers_carry_their_toc_digest_and_are_ordinary_gzip_tars_to_skopeo() {
    if !tools() {
        return;
    }
    let (_reg, _src, name) = converted(&[]);
    let m = manifest(&name);
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let toc = l["annotations"]["containerd.io/snapshot/stargz/toc.digest"].as_str().unwrap_or_default();
        assert!(toc.starts_with("sha256:"), "no TOC digest annotation on {l}");
    }
    // skopeo copies it (checking every blob's digest) into an OCI layout.
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:x", dir.path().join("copy").display());
    let out = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false", &format!("docker://{name}"), &dest])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_lazy_pull_reads_only_tocs_and_a_mount_fetches_only_the_files_it_reads() {
    if !tools() {
        return;
    }
    let (reg, _src, name) = converted(&[]);
    let m = manifest(&name);
    let layers = m["layers"].as_array().unwrap().len();
    let dst = Store::new();
    let out = dst.ok(&["pull", "--progress=plain", "--lazy=only", &name]);
    assert!(out.contains("Lazy (table of contents read)"), "{out}");
    let gets = layer_gets(&reg, &m);
    assert_eq!(gets.len(), 2 * layers, "a footer and a TOC per layer: {gets:?}");
    assert!(gets.iter().all(|(_, off, _)| *off > 0), "only ranges near the end: {gets:?}");

    // Inspecting the image reads tables of contents only.
    for args in [vec!["tree", &name[..]], vec!["layers", &name[..]], vec!["explain", &name[..], "/etc/passwd"]] {
        dst.ok(&args);
    }
    assert_eq!(layer_gets(&reg, &m).len(), 2 * layers, "tree/layers/explain fetched content");

    let mnt = Mounted::new(&dst, &name);
    // The whole tree is there before any content: listing and stat fetch nothing.
    let mut names = 0;
    for e in walkdir(&mnt.mnt) {
        std::fs::symlink_metadata(&e).unwrap();
        names += 1;
    }
    assert!(names > 300, "{names} entries");
    assert_eq!(layer_gets(&reg, &m).len(), 2 * layers, "metadata fetched content");
    assert_eq!(std::fs::metadata(mnt.path("bin/busybox")).unwrap().len(), 1982256);

    // Two small files: one range request each, and the right bytes.
    let passwd = std::fs::read(mnt.path("etc/passwd")).unwrap();
    assert_eq!(sha256(&passwd), "f6dfa4cb9d40b529be13e6387849dc284327d836bf281bb1476fc2721390ef89");
    let keep = std::fs::read(mnt.path("deep/a/b/c/keep")).unwrap();
    assert_eq!(sha256(&keep), "45f689bf33fce1194684ec9aa68137c522ab716c50fd5aa314662aaf16823a3f");
    let after = layer_gets(&reg, &m);
    assert_eq!(after.len(), 2 * layers + 2, "{after:?}");
    let fetched: u64 = after.iter().map(|(_, _, n)| n).sum();
    let total: u64 = m["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert!(fetched * 10 < total, "fetched {fetched} of {total} bytes");
    // Saving needs the blobs: one line says why not.
    let line = dst.fails(&["save", "-o", dst.path("x.tar").to_str().unwrap(), &name]);
    assert!(line.contains("was pulled lazily"), "{line}");
    // The store with a lazy image is whole.
    assert!(dst.ok(&["check"]).contains("no problems") || dst.run(&["check"]).status.success());
    // Read again: from the store, not the registry.
    std::fs::read(mnt.path("etc/passwd")).unwrap();
    assert_eq!(layer_gets(&reg, &m).len(), 2 * layers + 2);

    // Every file read through the lazy mount equals a full pull of the same image.
    let lazy = walk(&mnt.mnt);
    drop(mnt);
    let full = Store::new();
    full.ok(&["pull", &name]);
    let whole = Mounted::new(&full, &name);
    assert_eq!(lazy, walk(&whole.mnt));
    assert!(lazy.contains_key("stargz.index.json"), "the TOC entry is part of the layer, as docker shows it");
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The TOC entry of `path` in the converted image's layers (read from the source store).
fn toc_entry(src: &Store, path: &str) -> (String, Value) {
    for layer in std::fs::read_dir(src.root().join("layers")).unwrap() {
        let p = layer.unwrap().path().join("stargz.index.json");
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let toc: Value = serde_json::from_slice(&bytes).unwrap();
        for e in toc["entries"].as_array().unwrap() {
            if e["name"].as_str().unwrap().trim_start_matches("./") == path {
                return (sha256(&bytes), e.clone());
            }
        }
    }
    panic!("{path} in no TOC");
}

/// Where the registry keeps the layer blob whose TOC lists `file`, and that TOC entry.
fn registry_blob_holding(reg: &Registry, src: &Store, m: &Value, file: &str) -> (PathBuf, Value) {
    let (toc, entry) = toc_entry(src, file);
    let blob = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["containerd.io/snapshot/stargz/toc.digest"] == format!("sha256:{toc}").as_str())
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .expect("a layer with that TOC");
    (reg.blob_path(&blob), entry)
}

#[test]
fn a_chunk_altered_in_the_registry_gives_eio_for_its_file_only_and_nothing_wrong_is_kept() {
    if !tools() {
        return;
    }
    let (reg, src, name) = converted(&[]);
    let m = manifest(&name);
    let (path, entry) = registry_blob_holding(&reg, &src, &m, "bin/busybox");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = entry["offset"].as_u64().unwrap() as usize + 5000;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let dst = Store::new();
    dst.ok(&["pull", "--lazy=only", &name]);
    let mnt = Mounted::new(&dst, &name);
    for _ in 0..2 {
        let e = std::fs::read(mnt.path("bin/busybox")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    let passwd = std::fs::read(mnt.path("etc/passwd")).unwrap();
    assert_eq!(sha256(&passwd), "f6dfa4cb9d40b529be13e6387849dc284327d836bf281bb1476fc2721390ef89");
}

#[test]
fn a_toc_that_does_not_match_its_annotation_is_refused() {
    if !tools() {
        return;
    }
    let (reg, src, name) = converted(&[]);
    let m = manifest(&name);
    let (path, _) = registry_blob_holding(&reg, &src, &m, "etc/passwd");
    let mut bytes = std::fs::read(&path).unwrap();
    // The footer's last 16 hex digits say where the TOC member starts: rewrite its gzip
    // member with one byte of the JSON changed.
    let n = bytes.len();
    let off = u64::from_str_radix(std::str::from_utf8(&bytes[n - 51 + 16..n - 51 + 32]).unwrap(), 16).unwrap() as usize;
    let mut member = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[off..n - 51]), &mut member).unwrap();
    let i = member.windows(9).position(|w| w == b"\"version\"").unwrap();
    member[i + 1] = b'V';
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &member).unwrap();
    let mut new = bytes[..off].to_vec();
    new.extend(enc.finish().unwrap());
    new.extend(&bytes[n - 51..]);
    bytes = new;
    std::fs::write(&path, &bytes).unwrap();
    // The registry checks sizes against its link files only by digest path: the blob keeps its
    // name, so a client must check the TOC itself.
    let dst = Store::new();
    let line = dst.fails(&["pull", "--lazy", &name]);
    assert!(line.contains("table of contents") || line.contains("TOC"), "{line}");
    assert_eq!(dst.ok(&["images", "-q"]), "");
}

#[test]
fn with_the_registry_gone_what_was_read_still_reads_and_the_rest_fails_with_eio_in_time() {
    if !tools() {
        return;
    }
    let (mut reg, _src, name) = converted(&[]);
    let dst = Store::new();
    dst.ok(&["pull", "--lazy=only", &name]);
    let mnt = Mounted::new(&dst, &name);
    let passwd = std::fs::read(mnt.path("etc/passwd")).unwrap();
    reg.kill();
    assert_eq!(std::fs::read(mnt.path("etc/passwd")).unwrap(), passwd);
    let start = Instant::now();
    let e = std::fs::read(mnt.path("data/keep.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    drop(mnt);
    let mnt = dst.path("mnt").canonicalize().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.lines().any(|l| l.split(' ').nth(4) == mnt.to_str()), "still mounted");
}

#[test]
fn a_lazy_mount_fetches_the_prefetch_files_then_the_whole_layer_in_the_background() {
    if !tools() {
        return;
    }
    let (reg, _src, name) = converted(&["/etc/passwd"]);
    let m = manifest(&name);
    let dst = Store::new();
    dst.ok(&["pull", "--lazy", &name]);
    let mnt = Mounted::new(&dst, &name);
    // Everything arrives without being read.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let marked = std::process::Command::new("getfattr")
            .args(["-R", "-n", "user.strata.lazy", "--absolute-names"])
            .arg(dst.root().join("layers"))
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&marked.stdout).contains("user.strata.lazy=") {
            break;
        }
        assert!(Instant::now() < deadline, "the background fetch did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = layer_gets(&reg, &m).len();
    walk(&mnt.mnt);
    assert_eq!(layer_gets(&reg, &m).len(), before, "reading everything fetched nothing more");
}

/// A private containerd (its own root, state and socket), killed at the end.
struct Containerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = std::process::Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.dir.path().join("containerd.sock").exists() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// `ctr-remote` (stargz-snapshotter's ctr) against this containerd; must succeed.
    fn ctr(&self, args: &[&str]) {
        let out = std::process::Command::new("ctr-remote")
            .arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctr-remote {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn layers_converted_by_stargz_snapshotters_ctr_remote_read_lazily_as_a_full_pull() {
    if !tools() || !require_tool("ctr-remote") || !require_tool("containerd") {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let src = Store::new();
    src.load_fixture("oci-multi");
    let plain = format!("{}/fx/multi:1", reg.host());
    let theirs = format!("{}/fx/ctr:1", reg.host());
    src.ok(&["tag", "oci-multi", &plain]);
    src.ok(&["push", &plain]);
    let ctd = Containerd::start();
    ctd.ctr(&["image", "pull", "--plain-http", &plain]);
    ctd.ctr(&["image", "convert", "--estargz", "--oci", &plain, &theirs]);
    ctd.ctr(&["image", "push", "--plain-http", &theirs]);

    let lazy = Store::new();
    let out = lazy.ok(&["pull", "--progress=plain", "--lazy=only", &theirs]);
    assert_eq!(out.matches("Lazy (table of contents read)").count(), 5, "{out}");
    let mnt = Mounted::new(&lazy, &theirs);
    let seen = walk(&mnt.mnt);
    drop(mnt);
    let full = Store::new();
    full.ok(&["pull", &theirs]);
    let whole = Mounted::new(&full, &theirs);
    assert_eq!(seen, walk(&whole.mnt));
}

#[test]
fn podman_pulls_and_runs_the_converted_image_and_strata_runs_it_lazily() {
    if !tools() || !require_tool("podman") {
        return;
    }
    let (reg, _src, name) = converted(&[]);
    // tree --lazy of an image the store lacks: its tables of contents, no content.
    let m = manifest(&name);
    let viewer = Store::new();
    let tree = viewer.ok(&["tree", "--lazy", &name, "/etc"]);
    assert!(tree.contains("fx-release"), "{tree}");
    assert!(layer_gets(&reg, &m).iter().all(|(_, off, n)| *off > 0 && *n < 64 << 10), "{:?}", layer_gets(&reg, &m));
    let podman = common::engines::Podman::new();
    let out = podman.run(&["pull", "--tls-verify=false", &name]);
    assert!(out.status.success(), "podman pull: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman.run(&["run", "--rm", "--network", "none", "--runtime", "runc", &name, "cat", "/etc/fx-release"]);
    assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
    let release = String::from_utf8_lossy(&out.stdout).into_owned();

    let before = layer_gets(&reg, &m).len();
    let dst = Store::new();
    let out = dst.run(&["run", "--rm", "--lazy=only", "--network", "none", &name, "cat", "/etc/fx-release"]);
    assert!(out.status.success(), "strata run --lazy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), release);
    let fetched = layer_gets(&reg, &m).len() - before;
    // Footer and TOC of each layer, then only what the command (and the shell it is not) read.
    assert!(fetched < 2 * m["layers"].as_array().unwrap().len() + 6, "{fetched} blob requests");
}

#[test]
fn prefetch_from_a_command_puts_the_files_it_opens_first_and_push_can_convert_on_the_way() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let src = Store::new();
    src.load_fixture("oci-multi");
    src.ok(&["convert", "--estargz", "--prefetch-from", "cat /etc/fx-release /data/keep.txt", "oci-multi", "pf:1"]);
    let mut seen = Vec::new();
    for layer in std::fs::read_dir(src.root().join("layers")).unwrap() {
        let Ok(bytes) = std::fs::read(layer.unwrap().path().join("stargz.index.json")) else { continue };
        let toc: Value = serde_json::from_slice(&bytes).unwrap();
        let names: Vec<String> =
            toc["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
        if let Some(end) = names.iter().position(|n| n == ".prefetch.landmark") {
            seen.extend(names[..end].iter().filter(|n| !n.ends_with('/')).cloned());
        }
    }
    for f in ["bin/busybox", "etc/fx-release", "data/keep.txt"] {
        assert!(seen.iter().any(|s| s == f), "{f} not before a prefetch landmark: {seen:?}");
    }
    // push --compression estargz: the registry gets eStargz layers, lazily pullable.
    let dest = format!("{}/fx/pushed:1", reg.host());
    src.ok(&["push", "--compression", "estargz", "oci-multi", &dest]);
    let dst = Store::new();
    let out = dst.ok(&["pull", "--progress=plain", "--lazy=only", &dest]);
    assert_eq!(out.matches("Lazy (table of contents read)").count(), 5, "{out}");
}
