//! Integration tests of the image tool: drive the `strata` binary on a temp `--root`, with the
//! fixture images made by buildah/skopeo/umoci/docker (`fixtures/images/`), images built here
//! (zstd and plain layers, image indexes, several images per archive) and hostile archives.
//!
//! Tests named `root_…` mount with FUSE and need root: they return early without it, except
//! under `CI=true`, where they fail. Tests needing skopeo or umoci follow the same rule.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

mod common;

use common::store::{Store, fixtures, require_tool};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Whether this test may run as root; under CI=true, not being root is a failure.
fn require_root() -> bool {
    common::require_root("this test")
}

/// A fresh store (and scratch space) for one test.
struct Env(Store);

impl std::ops::Deref for Env {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(Store::new())
    }

    fn load(&self, path: &Path) -> String {
        self.ok(&["load", "--progress", "plain", "-i", path.to_str().unwrap()])
    }

    fn layer_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".json"))
            .collect();
        v.sort();
        v
    }

    fn blob_count(&self) -> usize {
        fs::read_dir(self.root().join("blobs/sha256")).unwrap().count()
    }

    /// The store holds nothing but its empty layout (after a failed import).
    fn assert_store_empty(&self) {
        assert_eq!(self.layer_dirs(), Vec::<String>::new(), "no layer may remain");
        assert_eq!(self.blob_count(), 0, "no blob may remain");
        assert_eq!(fs::read_dir(self.root().join("tmp")).unwrap().count(), 0, "no temp file may remain");
        assert_eq!(self.ok(&["images", "-q"]), "");
    }

    fn mount(&self, image: &str, mnt: &Path, writable: bool) -> MountGuard<'_> {
        fs::create_dir_all(mnt).unwrap();
        let mut args = vec!["image", "mount", image, mnt.to_str().unwrap()];
        if writable {
            args.push("--writable");
        }
        self.ok(&args);
        MountGuard { env: self, mnt: mnt.to_path_buf(), done: false }
    }
}

/// Unmounts on drop (through `strata image umount`, else `umount -l`).
struct MountGuard<'e> {
    env: &'e Env,
    mnt: PathBuf,
    done: bool,
}

impl MountGuard<'_> {
    fn umount(mut self) {
        self.env.ok(&["image", "umount", self.mnt.to_str().unwrap()]);
        self.done = true;
    }
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let out = self.env.run(&["image", "umount", self.mnt.to_str().unwrap()]);
            if !out.status.success() {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The tree under `root` in the fixtures' rootfs.tsv format, sorted by path.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk_into(root, root, &mut out);
    out.sort();
    out
}

fn walk_into(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let kind = match () {
            _ if ft.is_dir() => "d",
            _ if ft.is_symlink() => "l",
            _ if ft.is_file() => "f",
            _ if ft.is_fifo() => "p",
            _ if ft.is_char_device() => "c",
            _ if ft.is_block_device() => "b",
            _ => "s",
        };
        let perm = md.permissions().mode() & 0o7777;
        let mode = if perm < 0o1000 { format!("{perm:04o}") } else { format!("{perm:05o}") };
        let size = if kind == "f" { md.len().to_string() } else { "-".into() };
        let link = if kind == "l" { fs::read_link(&path).unwrap().to_string_lossy().into_owned() } else { "-".into() };
        let sum = if kind == "f" { sha256_hex(&fs::read(&path).unwrap()) } else { "-".into() };
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        out.push([rel, kind.into(), mode, format!("{}:{}", md.uid(), md.gid()), size, link, sum].join("\t"));
        if ft.is_dir() {
            walk_into(root, &path, out);
        }
    }
}

fn expected_rootfs(name: &str) -> Vec<String> {
    let text = fs::read_to_string(fixtures().join(format!("expected/{name}.rootfs.tsv"))).unwrap();
    let mut v: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    v.sort();
    v
}

/// Compares entry by entry and names every difference.
fn assert_rootfs(got: &[String], want: &[String], what: &str) {
    let index = |v: &[String]| -> BTreeMap<String, String> {
        v.iter().map(|l| (l.split('\t').next().unwrap().to_string(), l.clone())).collect()
    };
    let (g, w) = (index(got), index(want));
    let mut diffs = Vec::new();
    for (path, line) in &w {
        match g.get(path) {
            None => diffs.push(format!("missing: {line}")),
            Some(l) if l != line => diffs.push(format!("differs:\n  want {line}\n  got  {l}")),
            _ => {}
        }
    }
    diffs.extend(g.iter().filter(|(p, _)| !w.contains_key(*p)).map(|(_, l)| format!("unexpected: {l}")));
    assert!(diffs.is_empty(), "{what}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Building images

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One tar member; the name and link are written into the header verbatim (hostile ones too).
struct Member<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: &'a str,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Member<'a> {
    Member { name, kind: tar::EntryType::Regular, data, link: "" }
}

fn dir(name: &str) -> Member<'_> {
    Member { name, kind: tar::EntryType::Directory, data: b"", link: "" }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Member<'a> {
    Member { name, kind, data: b"", link: target }
}

fn tar_of(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..m.name.len()].copy_from_slice(m.name.as_bytes());
        h.as_old_mut().linkname[..m.link.len()].copy_from_slice(m.link.as_bytes());
        h.set_entry_type(m.kind);
        h.set_mode(if m.kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(m.data.len() as u64);
        h.set_cksum();
        b.append(&h, m.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a blob into an OCI layout; returns its descriptor.
fn put_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256_hex(bytes);
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A layer: its blob as stored and the tar it holds.
struct Layer {
    media_type: &'static str,
    blob: Vec<u8>,
    tar: Vec<u8>,
}

fn gz_layer(tar: Vec<u8>) -> Layer {
    Layer { media_type: GZIP, blob: gzip(&tar), tar }
}

/// Writes config + manifest for `layers` into the layout; returns the manifest descriptor.
fn put_image(layout: &Path, layers: &[Layer]) -> serde_json::Value {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(&l.tar))).collect();
    let config = serde_json::json!({
        "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "ENV A=b", "empty_layer": true}],
    });
    let config = put_blob(layout, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let descs: Vec<serde_json::Value> = layers.iter().map(|l| put_blob(layout, l.media_type, &l.blob)).collect();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": descs});
    put_blob(layout, MANIFEST, manifest.to_string().as_bytes())
}

/// Writes `oci-layout` and an `index.json` listing `entries`.
fn put_index(layout: &Path, entries: Vec<serde_json::Value>) {
    fs::create_dir_all(layout).unwrap();
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

fn with_name(mut desc: serde_json::Value, name: &str) -> serde_json::Value {
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    desc
}

/// An OCI layout with one image of `layers`, tagged `ref_name`.
fn oci_layout(at: &Path, layers: &[Layer], ref_name: &str) -> PathBuf {
    let desc = put_image(at, layers);
    put_index(at, vec![with_name(desc, ref_name)]);
    at.to_path_buf()
}

/// Packs a directory into a tar (an oci-archive or docker archive).
fn tar_dir(src: &Path, dest: &Path) {
    let mut b = tar::Builder::new(fs::File::create(dest).unwrap());
    b.append_dir_all(".", src).unwrap();
    b.finish().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Fixture images: the merged rootfs, mounted with Strata, matches what other tools agree on.

#[test]
fn root_fixture_images_mount_as_expected() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    let cases = [
        ("oci-multi", "oci-multi:latest", "multi"),
        ("multi.docker-save.tar", "localhost/fx/multi:latest", "multi"),
        ("oci-umoci", "oci-umoci:latest", "umoci"),
        ("umoci.skopeo.tar", "localhost/fx/umoci:latest", "umoci"),
    ];
    for (i, (source, name, expected)) in cases.iter().enumerate() {
        let out = env.load(&fixtures().join(source));
        assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
        let mnt = env.path(&format!("mnt{i}"));
        let guard = env.mount(name, &mnt, false);
        assert_rootfs(&walk(&mnt), &expected_rootfs(expected), source);
        if expected == &"multi" {
            // Times are the layers' (expected/multi.layers.txt, UTC), symlinks' and dirs' too.
            for (path, mtime) in [
                ("bin/busybox", 1_704_164_645),
                ("sbin/acpid", 1_704_164_645),
                ("data/sticky-dir", 1_704_164_645),
                ("data/keep.txt", 1_795_452_902),
                ("data/fifo", 1_795_452_902),
            ] {
                assert_eq!(fs::symlink_metadata(mnt.join(path)).unwrap().mtime(), mtime, "{source}: {path}");
            }
        }
        guard.umount();
    }
    assert_eq!(env.layer_dirs().len(), 7, "5 layers of multi + 2 of umoci, each once");
}

#[test]
fn root_unpacked_layers_hold_the_upper_format() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.load(&fixtures().join("oci-multi"));
    let layers = env.root().join("layers");
    // Layer 3: `.wh.remove-me.txt` and `.wh.dir-to-delete` became 0/0 character devices.
    let l3 = layers.join("374562354561fa2e97fe9138f01c80673d980ce07711951a7611588d71ed1efb");
    for name in ["data/remove-me.txt", "data/dir-to-delete"] {
        let md = fs::symlink_metadata(l3.join(name)).unwrap();
        assert!(md.file_type().is_char_device() && md.rdev() == 0, "{name} must be a whiteout device");
    }
    assert!(!l3.join("data/.wh.remove-me.txt").exists());
    // Layer 4: `opq/.wh..wh..opq` became the trusted opaque xattr.
    let l4 = layers.join("ff33573e4573bda32d1e43afaf2485cead159bebe0e6a5b6254d779cfa6d1b71");
    let opq = fs::File::open(l4.join("opq")).unwrap();
    let v = strata::sys::xattr::get(opq.as_fd(), None, OsStr::new("trusted.overlay.opaque")).unwrap();
    assert_eq!(v.as_deref(), Some(&b"y"[..]));
    assert!(!l4.join("opq/.wh..wh..opq").exists());
    // Layer 3: a hardlink stays a hardlink.
    let (a, b) =
        (fs::metadata(l3.join("data/added.txt")).unwrap(), fs::metadata(l3.join("data/added-hardlink")).unwrap());
    assert_eq!(a.ino(), b.ino());
    // Layer 1: the PAX xattr is kept.
    let l1 = layers.join("0adb58bb44b232c09f8b093cb19467a8521ec9243e3833e85a29fc845f63ee5f");
    let listing = fs::read_to_string(fixtures().join("expected/multi.layers.txt")).unwrap();
    assert!(listing.contains("bin/busybox"));
    let root = fs::File::open(&l1).unwrap();
    let mut with_xattr = 0;
    for dir in ["", "etc", "bin", "data"] {
        let Ok(d) = fs::read_dir(l1.join(dir)) else { continue };
        for e in d {
            let name = e.unwrap().file_name();
            let parent = fs::File::open(l1.join(dir)).unwrap();
            if let Ok(Some(_)) = strata::sys::xattr::get(parent.as_fd(), Some(&name), OsStr::new("user.fixture")) {
                with_xattr += 1;
            }
        }
    }
    drop(root);
    assert_eq!(with_xattr, 1, "the SCHILY.xattr.user.fixture record is kept");
}

// ---------------------------------------------------------------------------------------------
// Layer sharing

#[test]
fn shared_layers_are_unpacked_once() {
    let env = Env::new();
    env.load(&fixtures().join("oci-multi"));
    let layers = env.layer_dirs();
    assert_eq!(layers.len(), 5);
    let busybox =
        env.root().join("layers/0adb58bb44b232c09f8b093cb19467a8521ec9243e3833e85a29fc845f63ee5f/bin/busybox");
    let ino = fs::metadata(&busybox).unwrap().ino();
    // The same image from docker save (plain tars, other blobs): every layer is already there.
    let out = env.load(&fixtures().join("multi.docker-save.tar"));
    assert_eq!(out.matches("Already exists").count(), 5, "{out}");
    assert_eq!(env.layer_dirs(), layers);
    assert_eq!(fs::metadata(&busybox).unwrap().ino(), ino, "the layer was not unpacked again");
    // Two images made here that share a base layer: three layer dirs in all.
    let base = || gz_layer(tar_of(&[dir("etc/"), file("etc/base", b"base")]));
    let a = oci_layout(&env.path("a"), &[base(), gz_layer(tar_of(&[file("a", b"a")]))], "v1");
    let b = oci_layout(&env.path("b"), &[base(), gz_layer(tar_of(&[file("b", b"b")]))], "v1");
    env.load(&a);
    let rb = env.load(&b);
    assert_eq!(rb.matches("Already exists").count(), 1, "{rb}");
    assert_eq!(env.layer_dirs().len(), 5 + 3);
    let base_of = |name: &str| -> PathBuf {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
        PathBuf::from(v[0]["Layers"][0]["Path"].as_str().unwrap()).join("etc/base")
    };
    let (ba, bb) = (base_of("a:v1"), base_of("b:v1"));
    assert_eq!(fs::metadata(&ba).unwrap().ino(), fs::metadata(&bb).unwrap().ino(), "one file on disk for both images");
    // Disk usage: loading the docker-save copy of the whole image added no layer content.
    let du = |p: &Path| String::from_utf8(Command::new("du").arg("-sb").arg(p).output().unwrap().stdout).unwrap();
    let layers = env.root().join("layers");
    let before = du(&layers);
    env.load(&fixtures().join("multi.docker-save.tar"));
    assert_eq!(du(&layers), before);
}

// ---------------------------------------------------------------------------------------------
// Formats: image index, zstd and plain layers, oci-archive, docker archives.

fn zstd_layer(tar: Vec<u8>) -> Layer {
    Layer {
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
        blob: zstd::encode_all(&tar[..], 3).unwrap(),
        tar,
    }
}

fn plain_layer(tar: Vec<u8>) -> Layer {
    Layer { media_type: "application/vnd.oci.image.layer.v1.tar", blob: tar.clone(), tar }
}

#[test]
fn image_index_selects_linux_amd64_with_zstd_and_plain_layers() {
    let env = Env::new();
    let layout = env.path("multiarch");
    let amd64 =
        put_image(&layout, &[zstd_layer(tar_of(&[file("z", b"zstd")])), plain_layer(tar_of(&[file("p", b"plain")]))]);
    let arm64 = put_image(&layout, &[gz_layer(tar_of(&[file("arm", b"arm")]))]);
    let mut m1 = arm64;
    m1["platform"] = serde_json::json!({"architecture": "arm64", "os": "linux"});
    let mut m2 = amd64;
    m2["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [m1, m2]});
    let index = put_blob(&layout, "application/vnd.oci.image.index.v1+json", index.to_string().as_bytes());
    put_index(&layout, vec![with_name(index, "docker.io/library/multiarch:1.0")]);
    let out = env.load(&layout);
    assert!(out.contains("Loaded image: multiarch:1.0"), "{out}");
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "multiarch:1.0"])).unwrap();
    let layers = inspect[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "the amd64 manifest was chosen");
    let dirs: Vec<PathBuf> = layers.iter().map(|l| PathBuf::from(l["Path"].as_str().unwrap())).collect();
    assert_eq!(fs::read(dirs[0].join("z")).unwrap(), b"zstd");
    assert_eq!(fs::read(dirs[1].join("p")).unwrap(), b"plain");
}

#[test]
fn oci_archive_and_several_images_per_docker_archive() {
    let env = Env::new();
    // oci-archive: the fixture layout packed as a tar.
    tar_dir(&fixtures().join("oci-multi"), &env.path("multi.oci.tar"));
    let out = env.load(&env.path("multi.oci.tar"));
    assert!(out.contains("Loaded image: multi:latest"), "{out}");
    // One docker archive with both fixture images (legacy layout + skopeo's symlinked form).
    let mut b = tar::Builder::new(fs::File::create(env.path("both.tar")).unwrap());
    let mut manifest: Vec<serde_json::Value> = Vec::new();
    for archive in ["multi.docker-save.tar", "umoci.skopeo.tar"] {
        let mut a = tar::Archive::new(fs::File::open(fixtures().join(archive)).unwrap());
        for entry in a.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            if path == Path::new("manifest.json") {
                let mut json = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut json).unwrap();
                manifest.extend(serde_json::from_slice::<Vec<serde_json::Value>>(&json).unwrap());
            } else if path != Path::new("repositories") {
                let header = entry.header().clone();
                b.append(&header, &mut entry).unwrap();
            }
        }
    }
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", &json[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let out = env.load(&env.path("both.tar"));
    assert!(out.contains("Loaded image: localhost/fx/multi:latest"), "{out}");
    assert!(out.contains("Loaded image: localhost/fx/umoci:latest"), "{out}");
    assert_eq!(env.layer_dirs().len(), 7);
    // A gzip-compressed docker archive (docker save | gzip) loads the same.
    fs::write(env.path("multi.tar.gz"), gzip(&fs::read(fixtures().join("multi.docker-save.tar")).unwrap())).unwrap();
    let out = env.load(&env.path("multi.tar.gz"));
    assert_eq!(out.matches("Already exists").count(), 5, "{out}");
    assert_eq!(fs::read_dir(env.root().join("tmp")).unwrap().count(), 0, "the decompressed copy is gone");
}

#[test]
fn docker_25_archive_with_an_oci_layout_inside() {
    let env = Env::new();
    let layer = plain_layer(tar_of(&[dir("etc/"), file("etc/os-release", b"ID=test\n")]));
    let dir = env.path("d25");
    let desc = put_image(&dir, &[layer]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("blobs/sha256").join(&desc["digest"].as_str().unwrap()[7..])).unwrap(),
    )
    .unwrap();
    let mut entry = desc.clone();
    entry["annotations"] = serde_json::json!({
        "io.containerd.image.name": "docker.io/library/d25:latest",
        "org.opencontainers.image.ref.name": "latest"});
    put_index(&dir, vec![entry]);
    let blob = |d: &serde_json::Value| format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]);
    let docker = serde_json::json!([{"Config": blob(&manifest["config"]), "RepoTags": ["d25:latest"],
        "Layers": [blob(&manifest["layers"][0])]}]);
    fs::write(dir.join("manifest.json"), docker.to_string()).unwrap();
    tar_dir(&dir, &env.path("d25.tar"));
    let out = env.load(&env.path("d25.tar"));
    assert!(out.contains("Loaded image: d25:latest"), "{out}");
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "d25"])).unwrap();
    assert_eq!(inspect[0]["ManifestDigest"], desc["digest"], "the archive's own manifest is kept, not remade");
}

#[test]
fn import_makes_a_one_layer_image_from_a_rootfs_tarball() {
    let env = Env::new();
    let tarball = env.path("rootfs.tar.gz");
    fs::write(&tarball, gzip(&tar_of(&[dir("./"), dir("bin/"), file("bin/hello", b"hi")]))).unwrap();
    let id = env.ok(&["import", "--progress", "quiet", tarball.to_str().unwrap(), "me/rootfs:1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let images = env.ok(&["images"]);
    assert!(images.contains("me/rootfs") && images.contains(&id.trim()[7..19]), "{images}");
    let history = env.ok(&["history", "me/rootfs:1"]);
    assert!(history.contains("Imported from"), "{history}");
    // From standard input, docker style: the same layer, already there.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(env.root())
        .args(["import", "--progress", "quiet", "-", "me/stdin"])
        .stdin(fs::File::open(&tarball).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.layer_dirs().len(), 1);
    assert!(env.ok(&["images"]).contains("me/stdin"));
}

// ---------------------------------------------------------------------------------------------
// Names, rmi, prune, inspect, history

#[test]
fn tag_rmi_and_prune_keep_only_what_images_reach() {
    let env = Env::new();
    env.load(&fixtures().join("oci-multi"));
    env.load(&fixtures().join("oci-umoci"));
    assert_eq!(env.layer_dirs().len(), 7);
    env.ok(&["tag", "oci-multi", "mine/multi:v2"]);
    let images = env.ok(&["images"]);
    assert!(images.starts_with("REPOSITORY   "), "{images}");
    assert!(images.contains("mine/multi") && images.contains("v2"), "{images}");
    let out = env.ok(&["rmi", "oci-multi:latest"]);
    assert!(out.contains("Untagged: oci-multi:latest") && !out.contains("Deleted"), "{out}");
    let out = env.ok(&["rmi", "mine/multi:v2"]);
    assert!(out.contains("Deleted: sha256:c705b7f0dde0"), "{out}");
    assert_eq!(env.layer_dirs().len(), 2, "only umoci's layers remain");
    // Moving a tag away leaves an untagged image, which prune deletes.
    let layout = oci_layout(&env.path("other"), &[gz_layer(tar_of(&[file("o", b"o")]))], "v1");
    env.load(&layout);
    env.ok(&["tag", "other:v1", "oci-umoci:latest"]);
    assert!(env.ok(&["images"]).contains("<none>"));
    assert_eq!(env.layer_dirs().len(), 3);
    let out = env.ok(&["prune"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(env.layer_dirs().len(), 1, "umoci's two layers went with the untagged image");
    assert!(env.fails(&["rmi", "nosuch:1"]).contains("No such image: nosuch:1"));
    assert!(env.fails(&["tag", "other:v1", "Bad:Name"]).contains("invalid image name"));
}

#[test]
fn inspect_and_history_describe_the_image() {
    let env = Env::new();
    env.load(&fixtures().join("oci-multi"));
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "oci-multi"])).unwrap();
    let img = &v[0];
    assert_eq!(img["Id"], "sha256:c705b7f0dde0f9cc7cf484f3c66b4eddf90cf18fcfdd7339bd0853e63259c9e8");
    assert_eq!(img["Config"]["WorkingDir"], "/data");
    let layers = img["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5);
    assert_eq!(layers[0]["Digest"], "sha256:a4c3828339eb50de8587d31a248a3af3be043e89e93f9d64627fbac7916855c5");
    assert_eq!(layers[0]["DiffID"], "sha256:0adb58bb44b232c09f8b093cb19467a8521ec9243e3833e85a29fc845f63ee5f");
    assert_eq!(layers[0]["Size"], 1541941);
    // history: every step, empty layers included, newest first, the image id on top.
    let history = env.ok(&["history", "c705b7f0"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY") && lines[0].contains("COMMENT"));
    assert_eq!(lines.len(), 1 + 9, "5 layers + 4 empty steps:\n{history}");
    assert!(lines[1].starts_with("c705b7f0dde0") && lines[1].contains("CMD"), "{history}");
    assert!(lines[2..].iter().all(|l| l.starts_with("<missing>")));
    assert_eq!(lines.iter().filter(|l| l.contains(" 0B ")).count(), 4, "{history}");
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken input: one clear line, nothing half-written, the store still usable.

fn hostile_case(env: &Env, name: &str, members: &[Member<'_>]) -> String {
    let layout = oci_layout(&env.path(name), &[gz_layer(tar_of(members))], "v1");
    env.fails(&["load", "-i", layout.to_str().unwrap()])
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let out = outside.to_str().unwrap();
    let abs = format!("{out}/abs");
    let passwd_links = fs::metadata("/etc/passwd").map(|m| m.nlink()).unwrap_or(0);
    let cases: Vec<(&str, Vec<Member<'_>>, &str)> = vec![
        ("dotdot", vec![file("../../escape", b"x")], "'..'"),
        ("absolute", vec![file(&abs, b"x")], "absolute"),
        ("symlink-then-file", vec![link("l", tar::EntryType::Symlink, "/"), file("l/tmp/escape", b"x")], "symlink"),
        ("symlink-to-outside", vec![link("o", tar::EntryType::Symlink, out), file("o/escape", b"x")], "symlink"),
        ("hardlink-passwd", vec![link("pw", tar::EntryType::Link, "/etc/passwd")], "absolute"),
        ("hardlink-dotdot", vec![link("pw", tar::EntryType::Link, "../../../../etc/passwd")], "'..'"),
        ("hardlink-dir", vec![dir("d/"), link("h", tar::EntryType::Link, "d")], "is a directory"),
        ("wh-empty", vec![file("d/.wh.", b"")], "whiteout"),
        ("wh-dotdot", vec![file("d/.wh..", b"")], "whiteout"),
    ];
    for (name, members, why) in &cases {
        let line = hostile_case(&env, name, members);
        assert!(line.contains(why), "{name}: {line}");
        assert!(line.contains("layer sha256:"), "{name}: the layer is named: {line}");
        env.assert_store_empty();
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{name} wrote outside the store");
    }
    assert!(!Path::new("/tmp/escape").exists());
    assert_eq!(fs::metadata("/etc/passwd").map(|m| m.nlink()).unwrap_or(0), passwd_links);
    // The store is still usable.
    env.load(&fixtures().join("oci-umoci"));
    assert_eq!(env.layer_dirs().len(), 2);
}

#[test]
fn broken_blobs_are_refused_and_nothing_remains() {
    let env = Env::new();
    let good = || gz_layer(tar_of(&[file("a", &[1u8; 100_000])]));
    // A truncated gzip, correctly described (so only decompression finds it).
    let mut cut = good();
    cut.blob.truncate(cut.blob.len() / 2);
    let layout = oci_layout(&env.path("truncated"), &[cut], "v1");
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("layer sha256:") && line.contains("reading the layer tar"), "{line}");
    env.assert_store_empty();
    // A blob whose content is not its digest (the first layer is fine and must not remain).
    let layout = env.path("wrong-digest");
    let desc = put_image(&layout, &[gz_layer(tar_of(&[file("ok", b"ok")])), good()]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(&desc["digest"].as_str().unwrap()[7..])).unwrap(),
    )
    .unwrap();
    let second = layout.join("blobs/sha256").join(&manifest["layers"][1]["digest"].as_str().unwrap()[7..]);
    let bad = gz_layer(tar_of(&[file("a", b"tampered")]));
    fs::write(&second, &bad.blob).unwrap();
    put_index(&layout, vec![with_name(desc, "v1")]);
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("does not match") || line.contains("diff_id") || line.contains("expected"), "{line}");
    assert!(line.contains(&manifest["layers"][1]["digest"].as_str().unwrap()[..19]), "names the blob: {line}");
    env.assert_store_empty();
    // A blob longer than its descriptor: reading stops one byte past the size it announced.
    let layout = env.path("too-long");
    let desc = put_image(&layout, &[good()]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(&desc["digest"].as_str().unwrap()[7..])).unwrap(),
    )
    .unwrap();
    let blob = layout.join("blobs/sha256").join(&manifest["layers"][0]["digest"].as_str().unwrap()[7..]);
    let mut f = fs::OpenOptions::new().append(true).open(&blob).unwrap();
    f.write_all(&vec![0u8; 50 << 20]).unwrap();
    drop(f);
    put_index(&layout, vec![with_name(desc, "v1")]);
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(
        line.contains("longer than the") && line.contains(&manifest["layers"][0]["digest"].as_str().unwrap()[..19]),
        "{line}"
    );
    env.assert_store_empty();
    // Garbage in place of the blob (same size): the digest is what is wrong, not the tar.
    let size = manifest["layers"][0]["size"].as_u64().unwrap() as usize;
    fs::write(&blob, (0..size).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("content does not match"), "{line}");
    env.assert_store_empty();
    // A manifest pointing to a blob that is not there.
    let layout = oci_layout(&env.path("missing"), &[good()], "v1");
    let m: serde_json::Value = serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = m["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&mdigest[7..])).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    fs::remove_file(layout.join("blobs/sha256").join(&layer[7..])).unwrap();
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("missing") && line.contains(&layer[7..]), "{line}");
    env.assert_store_empty();
    // Not an image at all.
    fs::write(env.path("junk.tar"), b"junk").unwrap();
    let line = env.fails(&["load", env.path("junk.tar").to_str().unwrap()]);
    assert!(line.contains("junk.tar"), "{line}");
    env.assert_store_empty();
    env.load(&fixtures().join("oci-umoci"));
}

/// Gigantic counts and sizes: more names for one file than the filesystem allows, an entry
/// claiming an exabyte, an `index.json` bigger than any real one. One line each, nothing kept.
#[test]
fn gigantic_counts_and_sizes_are_refused_in_one_line() {
    let env = Env::new();
    // 70,000 names for one file (ext4 allows 65,000).
    let names: Vec<String> = (0..70_000).map(|i| format!("l{i}")).collect();
    let mut members = vec![file("f", b"x")];
    members.extend(names.iter().map(|n| link(n, tar::EntryType::Link, "f")));
    let line = hostile_case(&env, "links", &members);
    assert!(line.contains("layer sha256:") && line.contains("Too many links"), "{line}");
    env.assert_store_empty();
    // A regular file whose header claims 2^60 bytes, followed by a few.
    let mut tar = tar_of(&[file("big", b"")]);
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 60);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.splice(0..512, h.as_bytes().iter().copied());
    let layout = oci_layout(&env.path("exabyte"), &[gz_layer(tar)], "v1");
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("layer sha256:") && line.contains("reading the layer tar"), "{line}");
    env.assert_store_empty();
    // An index.json of 40 MiB.
    let layout = oci_layout(&env.path("index"), &[gz_layer(tar_of(&[file("a", b"a")]))], "v1");
    let mut index = fs::read(layout.join("index.json")).unwrap();
    index.pop();
    index.extend(std::iter::repeat_n(b' ', 40 << 20));
    index.push(b'}');
    fs::write(layout.join("index.json"), index).unwrap();
    let line = env.fails(&["load", "-i", layout.to_str().unwrap()]);
    assert!(line.contains("index.json"), "{line}");
    env.assert_store_empty();
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn concurrent_commands_do_not_corrupt_the_store() {
    let env = Env::new();
    env.ok(&["images"]);
    let sources = ["oci-multi", "multi.docker-save.tar", "oci-umoci", "umoci.skopeo.tar"];
    let spawn = |args: Vec<&str>| {
        env.cmd(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let mut children: Vec<_> =
        sources.iter().map(|s| spawn(vec!["load", "-q", "-i", fixtures().join(s).to_str().unwrap()])).collect();
    // Readers and a pruner meanwhile: they wait for the writers, and the writers for them.
    for _ in 0..3 {
        children.push(spawn(vec!["images"]));
        children.push(spawn(vec!["prune"]));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 2, "two distinct image ids");
    assert_eq!(env.ok(&["images"]).lines().count(), 1 + 4);
    assert_eq!(env.layer_dirs().len(), 7);
}

// ---------------------------------------------------------------------------------------------
// Rootless: an unprivileged user's store, and root of a user namespace that maps one id.

/// The recorded owner (`user.strata.owner`) of `path`, if any.
fn recorded_owner(path: &Path) -> Option<String> {
    let parent = fs::File::open(path.parent().unwrap()).unwrap();
    let v = strata::sys::xattr::get(parent.as_fd(), path.file_name(), OsStr::new("user.strata.owner")).unwrap();
    v.map(|v| String::from_utf8(v).unwrap())
}

/// A layer with a device node, a FIFO and a file owned by 123:456.
fn special_files_layer() -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in [("dev/null", tar::EntryType::Char), ("fifo", tar::EntryType::Fifo)] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, name, &[][..]).unwrap();
    }
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o640);
    h.set_uid(123);
    h.set_gid(456);
    h.set_mtime(1_700_000_000);
    h.set_size(2);
    b.append_data(&mut h, "owned", &b"ok"[..]).unwrap();
    plain_layer(b.into_inner().unwrap())
}

/// Runs `sh -c script` as `uid` (with `$1` = `arg`); returns its stdout.
fn sh_as(uid: u32, script: &str, arg: &Path) -> Vec<u8> {
    let u = uid.to_string();
    let out = Command::new("setpriv")
        .args(["--reuid", &u, "--regid", &u, "--clear-groups", "sh", "-c", script, "sh"])
        .arg(arg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// [`walk`] without the owner column, done by `uid` (a FUSE mount of a user is theirs alone).
fn walk_as(uid: u32, root: &Path) -> Vec<String> {
    let split =
        |b: Vec<u8>| -> Vec<String> { b.split(|&c| c == 0).map(|f| String::from_utf8(f.to_vec()).unwrap()).collect() };
    let sums: BTreeMap<String, String> =
        split(sh_as(uid, "cd \"$1\" && find . -type f -print0 | xargs -0 sha256sum -z", root))
            .iter()
            .filter_map(|l| {
                l.split_once("  ").map(|(sum, p)| (p.trim_start_matches("./").to_string(), sum.to_string()))
            })
            .collect();
    let fields = split(sh_as(uid, "find \"$1\" -mindepth 1 -printf '%P\\0%y\\0%m\\0%s\\0%l\\0'", root));
    let mut out: Vec<String> = fields
        .chunks_exact(5)
        .map(|f| {
            let perm = u32::from_str_radix(&f[2], 8).unwrap();
            let mode = if perm < 0o1000 { format!("{perm:04o}") } else { format!("{perm:05o}") };
            let file = f[1] == "f";
            let size = if file { f[3].clone() } else { "-".into() };
            let link = if f[1] == "l" { f[4].clone() } else { "-".into() };
            let sum = if file { sums[&f[0]].clone() } else { "-".into() };
            [f[0].clone(), f[1].clone(), mode, size, link, sum].join("\t")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn root_rootless_load_records_owners_and_skips_devices() {
    if !require_root() {
        return;
    }
    let env = Store::as_user(65534);
    env.load_fixture("oci-multi");
    let layers = env.root().join("layers");
    // Layer 2 (files of 1000:1000): owners the user cannot set are recorded, on files and dirs.
    let l2 = layers.join("c9419c40732c0ce5a727c522d15f987c0639e979eb567d77cd36aaaa52398fd2");
    for p in ["home/user", "home/user/owned.txt"] {
        assert_eq!(fs::symlink_metadata(l2.join(p)).unwrap().uid(), 65534, "{p} belongs to the user");
        assert_eq!(recorded_owner(&l2.join(p)).as_deref(), Some("1000:1000"), "{p}");
    }
    let l4 = layers.join("ff33573e4573bda32d1e43afaf2485cead159bebe0e6a5b6254d779cfa6d1b71");
    let opq = fs::File::open(l4.join("opq")).unwrap();
    let v = strata::sys::xattr::get(opq.as_fd(), None, OsStr::new("user.overlay.opaque")).unwrap();
    assert_eq!(v.as_deref(), Some(&b"y"[..]), "rootless opaque dirs use the user. namespace");
    // The merged view, mounted by the user: all but the owners as every other tool shows it.
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::chown(&mnt, Some(65534), Some(65534)).unwrap();
    env.ok(&["image", "mount", "oci-multi", mnt.to_str().unwrap()]);
    let got = walk_as(65534, &mnt);
    env.ok(&["image", "umount", mnt.to_str().unwrap()]);
    let no_owner = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.split('\t').enumerate().filter(|(i, _)| *i != 3).map(|(_, c)| c).collect::<Vec<_>>().join("\t"))
            .collect()
    };
    assert_rootfs(&got, &no_owner(&expected_rootfs("multi")), "rootless mount");
    // A device node cannot be made: skipped with a warning; the FIFO and the owner are kept.
    let layout = oci_layout(&env.path("special"), &[special_files_layer()], "v1");
    let layout = env.copy_in(&layout, "special-copy");
    let out = env.run(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"dev/null\": device node skipped"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "special-copy:v1"])).unwrap();
    let dir = PathBuf::from(v[0]["Layers"][0]["Path"].as_str().unwrap());
    assert!(!dir.join("dev/null").exists());
    assert!(fs::symlink_metadata(dir.join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(recorded_owner(&dir.join("owned")).as_deref(), Some("123:456"));
}

#[test]
fn root_load_as_root_of_a_user_namespace_records_the_owners_it_cannot_map() {
    if !require_root() {
        return;
    }
    let env = Store::as_user(65534);
    let src = env.copy_in(&fixtures().join("oci-multi"), "oci-multi");
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "unshare", "--user", "--map-root-user"])
        .arg(env.path("strata"))
        .arg("--root")
        .arg(env.root())
        .args(["load", "-q", "-i"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layers = env.root().join("layers");
    let l2 = layers.join("c9419c40732c0ce5a727c522d15f987c0639e979eb567d77cd36aaaa52398fd2");
    assert_eq!(recorded_owner(&l2.join("home/user/owned.txt")).as_deref(), Some("1000:1000"));
    // Root of the namespace is the user: 0:0 was set, not recorded.
    let md = fs::symlink_metadata(l2.join("home")).unwrap();
    assert_eq!((md.uid(), recorded_owner(&l2.join("home"))), (65534, Some("1000:1000".into())));
    let l1 = layers.join("0adb58bb44b232c09f8b093cb19467a8521ec9243e3833e85a29fc845f63ee5f");
    assert_eq!((fs::symlink_metadata(l1.join("bin")).unwrap().uid(), recorded_owner(&l1.join("bin"))), (65534, None));
    // Whiteouts are 0/0 devices, which a user namespace may make.
    let l3 = layers.join("374562354561fa2e97fe9138f01c80673d980ce07711951a7611588d71ed1efb");
    let wh = fs::symlink_metadata(l3.join("data/remove-me.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
}

// ---------------------------------------------------------------------------------------------
// Where the store is

#[test]
fn root_the_store_is_strata_root_or_the_users_data_dir() {
    if !require_root() {
        return;
    }
    let env = Store::as_user(65534);
    let home = env.dir.path().to_path_buf();
    let images = |vars: &[(&str, &Path)], extra: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "env",
            "-u",
            "STRATA_ROOT",
            "-u",
            "XDG_DATA_HOME",
        ]);
        c.args(vars.iter().map(|(k, v)| format!("{k}={}", v.display()))).arg(home.join("strata"));
        let out = c.args(extra).arg("images").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    images(&[("HOME", &home)], &[]);
    assert!(home.join(".local/share/strata/index.json").is_file(), "~/.local/share/strata by default");
    images(&[("HOME", &home), ("XDG_DATA_HOME", &home.join("xdg"))], &[]);
    assert!(home.join("xdg/strata/oci-layout").is_file(), "$XDG_DATA_HOME/strata");
    images(&[("HOME", &home), ("STRATA_ROOT", &home.join("env-root"))], &[]);
    assert!(home.join("env-root/index.json").is_file(), "STRATA_ROOT");
    let flag = home.join("flag-root");
    images(&[("HOME", &home), ("STRATA_ROOT", &home.join("unused"))], &["--root", flag.to_str().unwrap()]);
    assert!(flag.join("index.json").is_file() && !home.join("unused").exists(), "--root wins over STRATA_ROOT");
}

// ---------------------------------------------------------------------------------------------
// Progress

#[test]
fn progress_shows_per_layer_on_a_terminal_and_not_otherwise() {
    if !require_tool("script") {
        return;
    }
    let env = Env::new();
    let src = fixtures().join("oci-multi");
    let shown = env.on_tty(&["load", "-i", src.to_str().unwrap()]);
    let finals: Vec<&str> = shown.split(['\r', '\n']).map(|l| l.trim_start_matches("\x1b[2K")).collect();
    assert!(shown.contains("\x1b[2Ka4c3828339eb: Extracting "), "a live line per layer: {shown:?}");
    for layer in ["a4c3828339eb", "ba3cb4224343", "7c877e80c07f", "e12c8d01dc2e", "eb9bf698480d"] {
        assert!(finals.contains(&format!("{layer}: Pull complete").as_str()), "{layer}: {shown:?}");
    }
    assert!(finals.contains(&"Loaded image: oci-multi:latest"), "{shown:?}");
    let again = env.on_tty(&["load", "-i", fixtures().join("multi.docker-save.tar").to_str().unwrap()]);
    assert_eq!(again.matches(": Already exists").count(), 5, "{again:?}");
    // Not a terminal: the result only.
    let out = env.run(&["load", "-i", src.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: oci-multi:latest\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

// ---------------------------------------------------------------------------------------------
// Mounts

#[test]
fn root_writable_mount_uses_a_scratch_upper_that_umount_drops() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.load(&fixtures().join("oci-umoci"));
    let ro = env.path("ro");
    let guard = env.mount("oci-umoci", &ro, false);
    let err = fs::write(ro.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(env.fails(&["rmi", "oci-umoci"]).contains("in use by the mount"));
    guard.umount();
    let rw = env.path("rw");
    let guard = env.mount("oci-umoci", &rw, true);
    fs::write(rw.join("new"), b"x").unwrap();
    fs::remove_file(rw.join("etc/passwd")).unwrap();
    let records = env.root().join("mounts");
    assert_eq!(fs::read_dir(&records).unwrap().count(), 1);
    assert!(env.fails(&["image", "mount", "oci-umoci", rw.to_str().unwrap()]).contains("already mounted"));
    guard.umount();
    assert_eq!(fs::read_dir(&records).unwrap().count(), 0, "the scratch upper is gone");
    let layer = env.root().join("layers/395509847c508bc6e2987c759f3e17859eacba46a4e21fc8b0cc3b02dbd2ca9b");
    assert!(layer.join("etc/passwd").exists(), "writes never reach a layer");
    assert!(!layer.join("new").exists());
    env.ok(&["rmi", "oci-umoci"]);
}

#[test]
fn root_strata_mount_image_mnt_is_an_image_mount_and_plain_umount_ends_it() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.load(&fixtures().join("oci-umoci"));
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    env.ok(&["mount", "oci-umoci", mnt.to_str().unwrap()]);
    let got = walk(&mnt);
    // Unmounted the plain way: the record it leaves no longer keeps the image.
    env.ok(&["umount", mnt.to_str().unwrap()]);
    assert_rootfs(&got, &expected_rootfs("umoci"), "strata mount IMAGE MNT");
    env.ok(&["mount", "--writable", "oci-umoci", mnt.to_str().unwrap()]);
    fs::write(mnt.join("scratch"), b"x").unwrap();
    let out = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(out.success());
    env.ok(&["rmi", "oci-umoci"]);
    assert_eq!(fs::read_dir(env.root().join("mounts")).unwrap().count(), 0, "stale records and scratch dirs go");
    assert_eq!(env.layer_dirs(), Vec::<String>::new());
    // With a layer option it is a union mount (which fails here: no such dir).
    let line = env.fails(&["mount", "--lower", env.path("nope").to_str().unwrap(), mnt.to_str().unwrap()]);
    assert!(line.contains("nope"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Round trips with skopeo and umoci

#[test]
fn skopeo_reads_the_store_and_its_archives_load() {
    if !require_tool("skopeo") {
        return;
    }
    let env = Env::new();
    let archive = env.path("x.tar");
    let src = format!("oci:{}:latest", fixtures().join("oci-multi").display());
    let st =
        Command::new("skopeo").args(["copy", "-q", &src, &format!("oci-archive:{}:v1", archive.display())]).status();
    assert!(st.unwrap().success());
    let out = env.load(&archive);
    assert!(out.contains("Loaded image: x:v1"), "{out}");
    env.load(&fixtures().join("umoci.skopeo.tar"));
    // The store is an OCI layout skopeo reads and copies from, its files readable by all.
    for f in ["oci-layout", "index.json"] {
        assert_eq!(fs::metadata(env.root().join(f)).unwrap().mode() & 0o777, 0o644, "{f}");
    }
    for e in fs::read_dir(env.root().join("blobs/sha256")).unwrap() {
        assert_eq!(e.unwrap().metadata().unwrap().mode() & 0o777, 0o644);
    }
    let store_ref = format!("oci:{}:localhost/fx/umoci:latest", env.root().display());
    let inspect = Command::new("skopeo").args(["inspect", &store_ref]).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let copy = env.path("copy");
    let st = Command::new("skopeo").args(["copy", "-q", &store_ref, &format!("oci:{}:c", copy.display())]).status();
    assert!(st.unwrap().success());
    let dest = format!("dir:{}", env.path("dir-copy").display());
    let st = Command::new("skopeo").args(["copy", "-q", &format!("oci:{}:x:v1", env.root().display()), &dest]).status();
    assert!(st.unwrap().success());
}

#[test]
fn root_umoci_images_import_and_mount() {
    if !require_root() || !require_tool("umoci") {
        return;
    }
    let env = Env::new();
    let layout = env.path("umo");
    let image = format!("{}:t1", layout.display());
    let bundle = env.path("bundle");
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().unwrap();
        assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "--layout", layout.to_str().unwrap()]);
    run(&["new", "--image", &image]);
    run(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
    fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    fs::write(bundle.join("rootfs/etc/hello"), b"from umoci\n").unwrap();
    std::os::unix::fs::symlink("/etc/hello", bundle.join("rootfs/hello")).unwrap();
    run(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    fs::remove_file(bundle.join("rootfs/etc/hello")).unwrap();
    run(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    let out = env.load(&layout);
    assert!(out.contains("Loaded image: umo:t1"), "{out}");
    let mnt = env.path("mnt");
    let guard = env.mount("umo:t1", &mnt, false);
    assert_eq!(fs::read_link(mnt.join("hello")).unwrap(), Path::new("/etc/hello"));
    assert!(!mnt.join("etc/hello").exists(), "the second layer's whiteout hides it");
    assert!(mnt.join("etc").is_dir());
    guard.umount();
}
