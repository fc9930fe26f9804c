//! Self-tests of the registry harness (`tests/common/registry.rs`): real `docker-registry`
//! processes, driven by skopeo and by raw HTTP, over plain HTTP and TLS, without auth, with
//! htpasswd and with token auth; their logs; kill and restart; the throttling proxy.
//!
//! Every test needs `docker-registry`, `htpasswd`, `openssl` and `skopeo`: without them it
//! returns early, except under `CI=true`, where it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

mod common;

use common::registry::{Liar, Lie, Registry, RegistryOptions, SERVICE, Throttle, TokenAuth, require_registry};
use common::store::{fixtures, require_tool};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Whether the tools are installed (under `CI=true` they must be).
fn tools() -> bool {
    require_registry() && require_tool("skopeo")
}

/// The bundled OCI layout (5 layers), as a skopeo source.
fn fixture() -> String {
    format!("oci:{}:latest", fixtures().join("oci-multi").display())
}

/// skopeo without any stored credentials: its home, runtime dir and auth file are in a temp dir.
struct Skopeo(tempfile::TempDir);

impl Skopeo {
    fn new() -> Skopeo {
        Skopeo(tempfile::tempdir().unwrap())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .env("HOME", self.0.path())
            .env("XDG_RUNTIME_DIR", self.0.path())
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .output()
            .unwrap()
    }

    /// Runs skopeo, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "skopeo {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs skopeo, which must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "skopeo {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// (digest, size) of the largest layer of a manifest.
fn largest_layer(manifest: &str) -> (String, u64) {
    let v: Value = serde_json::from_str(manifest).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let big = layers.iter().max_by_key(|l| l["size"].as_u64().unwrap()).unwrap();
    (big["digest"].as_str().unwrap().to_string(), big["size"].as_u64().unwrap())
}

/// `GET path` on `host` over a fresh connection, with extra header lines; returns the status
/// (0 if no head came) and whatever body arrived before the connection closed.
fn http_get(host: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut conn = TcpStream::connect(host).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else { return (0, Vec::new()) };
    let head = String::from_utf8_lossy(&all[..end]);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, all[end + 4..].to_vec())
}

/// Uploads `data` as a blob of `repo` (POST, then PUT with the digest); returns its digest.
fn upload_blob(reg: &Registry, repo: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let agent = reg.agent();
    let started = agent.post(reg.url(&format!("/v2/{repo}/blobs/uploads/"))).send_empty().unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap();
    let location = if location.starts_with('/') { reg.url(location) } else { location.to_string() };
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = agent.put(format!("{location}{sep}digest={digest}")).send(data).unwrap();
    assert_eq!(done.status(), 201);
    digest
}

/// 2 MiB that do not repeat in short runs.
fn two_mib() -> Vec<u8> {
    (0..2u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn plain_http_registry_takes_a_push_and_logs_each_blob_read() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let sk = Skopeo::new();
    let image = format!("docker://{}/fx/a:1", reg.host());
    sk.ok(&["copy", "--dest-tls-verify=false", &fixture(), &image]);
    let inspect: Value = serde_json::from_str(&sk.ok(&["inspect", "--tls-verify=false", &image])).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 5);
    let (digest, size) = largest_layer(&sk.ok(&["inspect", "--raw", "--tls-verify=false", &image]));
    assert_eq!(std::fs::metadata(reg.blob_path(&digest)).unwrap().len(), size);
    assert!(reg.requests().iter().any(|r| r.method == "PUT" && r.uri == "/v2/fx/a/manifests/1" && r.status == 201));

    let pulled = format!("oci:{}:x", sk.path("pulled").display());
    sk.ok(&["copy", "--src-tls-verify=false", &image, &pulled]);
    let gets = reg.blob_gets(&digest);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!((gets[0].status, gets[0].written, gets[0].offset), (200, size, Some(0)));
    assert_eq!(reg.blob_written(&digest), vec![size]);
}

#[test]
fn tls_registry_with_htpasswd_takes_the_right_password_only() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().tls().htpasswd(&[("alice", "s3cret"), ("bob", "b0b")]));
    let certs = reg.cert_dir();
    let certs = certs.to_str().unwrap();
    let names: Vec<_> = std::fs::read_dir(certs).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["ca.crt"]);
    let sk = Skopeo::new();
    let image = format!("docker://{}/fx/a:1", reg.host());
    sk.ok(&["copy", "--dest-cert-dir", certs, "--dest-creds", "alice:s3cret", &fixture(), &image]);
    sk.ok(&["inspect", "--cert-dir", certs, "--creds", "bob:b0b", &image]);

    let err = sk.fails(&["inspect", "--cert-dir", certs, "--creds", "alice:wrong", &image]);
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");
    let err = sk.fails(&["inspect", "--creds", "alice:s3cret", &image]);
    assert!(err.contains("certificate signed by unknown authority"), "{err}");
    let local = format!("docker://localhost:{}/fx/a:1", reg.host().rsplit(':').next().unwrap());
    sk.ok(&["inspect", "--cert-dir", certs, "--creds", "alice:s3cret", &local]);

    let users: Vec<_> = reg.requests().into_iter().filter_map(|r| r.user).collect();
    assert!(users.iter().any(|u| u == "alice") && users.iter().any(|u| u == "bob"), "{users:?}");
}

#[test]
fn token_auth_grants_push_by_prefix_and_pull_to_anyone() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().token(TokenAuth::new(&[("alice", "pa"), ("bob", "pb")])));
    let sk = Skopeo::new();
    let (mine, theirs) = (format!("docker://{}/alice/x:1", reg.host()), format!("docker://{}/bob/x:1", reg.host()));
    sk.ok(&["copy", "--dest-tls-verify=false", "--dest-creds", "alice:pa", &fixture(), &mine]);
    let err = sk.fails(&["copy", "--dest-tls-verify=false", "--dest-creds", "alice:pa", &fixture(), &theirs]);
    assert!(err.contains("denied") || err.contains("unauthorized"), "{err}");
    sk.ok(&["inspect", "--tls-verify=false", "--no-creds", &mine]);
    let err = sk.fails(&["inspect", "--tls-verify=false", "--creds", "alice:wrong", &mine]);
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");

    let seen = reg.token_requests();
    let alice = |r: &&common::registry::TokenRequest| r.user.as_deref() == Some("alice");
    assert!(seen.iter().filter(alice).any(|r| r.granted.contains(&"repository:alice/x:pull,push".to_string())));
    assert!(seen.iter().filter(alice).any(|r| r.granted == ["repository:bob/x:pull"]), "{seen:#?}");
    assert!(seen.iter().any(|r| !r.authorization && r.status == 200 && r.granted == ["repository:alice/x:pull"]));
    assert!(seen.iter().any(|r| r.authorization && r.status == 401 && r.user.is_none()));
    assert!(seen.iter().all(|r| r.path.starts_with("/token?")));
    assert!(reg.requests().iter().any(|r| r.user.as_deref() == Some("alice") && r.status == 201));
}

#[test]
fn registry_refuses_a_token_once_its_expires_in_has_passed() {
    if !require_registry() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().token(TokenAuth::new(&[]).expires_in(2)));
    let agent = reg.agent();
    let url = format!("{}?service={SERVICE}&scope=repository:fx/a:pull", reg.token_realm());
    let answer: Value =
        serde_json::from_str(&agent.get(url).call().unwrap().body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(answer["expires_in"], 2);
    let tags = || {
        let bearer = format!("Bearer {}", answer["token"].as_str().unwrap());
        agent.get(reg.url("/v2/fx/a/tags/list")).header("Authorization", bearer).call().unwrap().status()
    };
    assert_eq!(tags(), 404, "the token is good: the repository is unknown");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tags(), 401);
}

#[test]
fn killed_and_restarted_registry_keeps_its_images_and_port() {
    if !tools() {
        return;
    }
    let mut reg = Registry::start(RegistryOptions::new());
    let sk = Skopeo::new();
    let image = format!("docker://{}/fx/a:1", reg.host());
    sk.ok(&["copy", "--dest-tls-verify=false", &fixture(), &image]);
    let before = sk.ok(&["inspect", "--tls-verify=false", &image]);
    let host = reg.host();
    reg.kill();
    sk.fails(&["inspect", "--tls-verify=false", &image]);
    reg.restart();
    assert_eq!(reg.host(), host);
    assert_eq!(sk.ok(&["inspect", "--tls-verify=false", &image]), before);
}

#[test]
fn throttle_holds_a_download_to_its_rate() {
    if !require_registry() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let blob = two_mib();
    let digest = upload_blob(&reg, "fx/big", &blob);
    let proxy = Throttle::start(&reg.host());
    proxy.set_rate(1 << 20);
    let start = Instant::now();
    let (status, body) = http_get(&proxy.host(), &format!("/v2/fx/big/blobs/{digest}"), "");
    let took = start.elapsed();
    assert_eq!(status, 200);
    assert!(body == blob, "got {} bytes", body.len());
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(10), "took {took:?}");
    assert!(proxy.to_client() > blob.len() as u64 && proxy.to_upstream() > 0);
    assert_eq!(proxy.connections(), 1);
    assert_eq!(reg.blob_written(&digest), [blob.len() as u64]);
}

#[test]
fn killing_the_registry_cuts_a_throttled_download_and_a_range_resumes_it() {
    if !require_registry() {
        return;
    }
    let mut reg = Registry::start(RegistryOptions::new());
    let blob = two_mib();
    let digest = upload_blob(&reg, "fx/big", &blob);
    let proxy = Throttle::start(&reg.host());
    proxy.set_rate(512 << 10);
    let (host, path) = (proxy.host(), format!("/v2/fx/big/blobs/{digest}"));
    let download = std::thread::spawn(move || http_get(&host, &path, ""));
    while proxy.to_client() < 256 << 10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    reg.kill();
    proxy.cut();
    let (status, head) = download.join().unwrap();
    assert_eq!(status, 200);
    assert!(head.len() < blob.len() / 2, "got {} of {} bytes", head.len(), blob.len());
    assert!(head[..] == blob[..head.len()]);

    reg.restart();
    proxy.set_rate(0);
    let offset = head.len() as u64;
    let range = format!("Range: bytes={offset}-\r\n");
    let (status, tail) = http_get(&proxy.host(), &format!("/v2/fx/big/blobs/{digest}"), &range);
    assert_eq!(status, 206);
    assert!([head, tail].concat() == blob);
    let last = reg.blob_gets(&digest).pop().unwrap();
    assert_eq!((last.status, last.offset, last.written), (206, Some(offset), blob.len() as u64 - offset));
}

// ---------------------------------------------------------------------------------------------
// strata pull, push, login and logout against these registries

use common::engines::{Dockerd, Podman};
use common::store::Store;

/// A store with the bundled `oci-multi` image named `HOST/fx/multi:1`.
fn store_with_fixture(host: &str) -> (Store, String) {
    let store = Store::new();
    store.load_fixture("oci-multi");
    let name = format!("{host}/fx/multi:1");
    store.ok(&["tag", "oci-multi", &name]);
    (store, name)
}

/// `strata images --no-trunc` rows as (repository:tag, id).
fn images(store: &Store) -> Vec<(String, String)> {
    store
        .ok(&["images", "--no-trunc"])
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (format!("{}:{}", f[0], f[1]), f[2].to_string())
        })
        .collect()
}

/// What `strata inspect` says of an image.
fn inspect(store: &Store, image: &str) -> Value {
    let v: Value = serde_json::from_str(&store.ok(&["inspect", image])).unwrap();
    v[0].clone()
}

/// The image's manifest digest, as `strata inspect` reports it.
fn manifest_digest(store: &Store, image: &str) -> String {
    inspect(store, image)["ManifestDigest"].as_str().unwrap().to_string()
}

/// Names of the unpacked layers and blobs of a store (what a failed pull must not leave).
fn store_contents(store: &Store) -> (Vec<String>, Vec<String>) {
    let list = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(store.root().join(d))
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    (list("layers"), list("blobs/sha256"))
}

#[test]
fn strata_pushes_the_fixture_and_pulls_it_into_an_empty_store_as_the_registry_has_it() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    let out = src.ok(&["push", "--progress", "plain", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("The push refers to repository [{}/fx/multi]", reg.host()));
    assert_eq!(lines.iter().filter(|l| l.ends_with(": Pushed")).count(), 5, "{out}");
    let digest = manifest_digest(&src, &name);

    // skopeo sees what strata says it pushed.
    let sk = Skopeo::new();
    let remote = format!("docker://{name}");
    let seen: Value = serde_json::from_str(&sk.ok(&["inspect", "--tls-verify=false", &remote])).unwrap();
    assert_eq!(seen["Digest"], digest.as_str());
    let raw = sk.ok(&["inspect", "--raw", "--tls-verify=false", &remote]);
    assert_eq!(*lines.last().unwrap(), format!("1: digest: {digest} size: {}", raw.len()));
    let repo_digests = inspect(&src, &name)["RepoDigests"].clone();
    assert!(repo_digests.as_array().unwrap().contains(&Value::from(format!("{}/fx/multi@{digest}", reg.host()))));

    // Into an empty store: the same image id, manifest digest and rootfs.
    let dst = Store::new();
    let out = dst.ok(&["pull", &name]);
    assert_eq!(out, format!("{name}\n"), "stdout off a terminal holds only the reference");
    assert_eq!(images(&dst), vec![(name.clone(), images(&src)[0].1.clone())]);
    assert_eq!(manifest_digest(&dst, &name), digest);
    assert_eq!(dst.ok(&["tree", &name]), src.ok(&["tree", &name]));
    let out = dst.ok(&["pull", "--progress", "plain", &name]);
    assert!(out.contains(&format!("Status: Image is up to date for {name}")), "{out}");
    assert_eq!(out.matches(": Already exists").count(), 5, "{out}");
    // By digest: the same image, and nothing new.
    let by_digest = format!("{}/fx/multi@{digest}", reg.host());
    assert_eq!(dst.ok(&["pull", &by_digest]).trim(), by_digest);
}

/// A gzip layer made in the test: its blob and the digest of its tar.
struct Layer {
    blob: Vec<u8>,
    diff_id: String,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer holding `files` (path, content), gzip-compressed.
fn layer(files: &[(&str, &[u8])]) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, *data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    Layer { blob: gz.finish().unwrap(), diff_id: sha256(&tar) }
}

/// An OCI layout at `dir` with one image per (full name, layers).
fn layout(dir: &std::path::Path, images: &[(&str, Vec<&Layer>)]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8], media_type: &str| -> Value {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": d, "size": bytes.len()})
    };
    let mut entries = Vec::new();
    for (name, layers) in images {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        let config = put(&serde_json::to_vec(&config).unwrap(), "application/vnd.oci.image.config.v1+json");
        let layers: Vec<Value> =
            layers.iter().map(|l| put(&l.blob, "application/vnd.oci.image.layer.v1.tar+gzip")).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers,
        });
        let mut entry = put(&serde_json::to_vec(&manifest).unwrap(), "application/vnd.oci.image.manifest.v1+json");
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        entries.push(entry);
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dir.to_path_buf()
}

#[test]
fn shared_base_layers_are_not_sent_twice_are_mounted_across_repositories_and_not_fetched_twice() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let host = reg.host();
    let base = layer(&[("etc/base", b"the base\n")]);
    let (one, two) = (layer(&[("one", b"1\n")]), layer(&[("two", b"2\n")]));
    let (a, b) = (format!("{host}/fx/app:a"), format!("{host}/fx/app:b"));
    let src = Store::new();
    let dir = layout(&src.path("layout"), &[(&a, vec![&base, &one]), (&b, vec![&base, &two])]);
    src.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    let short = |l: &Layer| sha256(&l.blob)[7..19].to_string();

    let out = src.ok(&["push", "--progress", "plain", &a]);
    assert!(out.contains(&format!("{}: Pushed", short(&base))), "{out}");
    let out = src.ok(&["push", "--progress", "plain", &b]);
    assert!(out.contains(&format!("{}: Layer already exists", short(&base))), "{out}");
    assert!(out.contains(&format!("{}: Pushed", short(&two))), "{out}");
    // Another repository of the same registry: mounted, not uploaded.
    let c = format!("{host}/other/app:c");
    let out = src.ok(&["push", "--progress", "plain", &b, &c]);
    assert!(out.contains(&format!("{}: Mounted from fx/app", short(&base))), "{out}");
    assert!(out.contains(&format!("{}: Mounted from fx/app", short(&two))), "{out}");
    let mounts =
        reg.requests().iter().filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.status == 201).count();
    assert_eq!(mounts, 3, "both layers and the config");

    let dst = Store::new();
    let out = dst.ok(&["pull", "--progress", "plain", &a]);
    assert_eq!(out.matches(": Pull complete").count(), 2, "{out}");
    let out = dst.ok(&["pull", "--progress", "plain", &c]);
    assert!(out.contains(&format!("{}: Already exists", short(&base))), "{out}");
    assert!(out.contains(&format!("{}: Pull complete", short(&two))), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {c}")), "{out}");
    // The base was fetched once, by the first pull.
    assert_eq!(reg.blob_gets(&sha256(&base.blob)).len(), 1);
}

/// A registry holding the fixture as Strata pushes it; its name there, and the digest and size
/// of its largest layer.
fn registry_with_fixture() -> (Registry, String, (String, u64)) {
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    src.ok(&["push", &name]);
    let raw = Skopeo::new().ok(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")]);
    (reg, name, largest_layer(&raw))
}

#[test]
fn a_blob_changed_in_the_registry_is_refused_and_nothing_enters_the_store() {
    if !tools() {
        return;
    }
    let (reg, name, (digest, _)) = registry_with_fixture();
    let path = reg.blob_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let dst = Store::new();
    let line = dst.fails(&["pull", &name]);
    assert!(line.contains(&format!("layer {digest}: content does not match: expected {digest}")), "{line}");
    assert_eq!(dst.ok(&["images", "-q"]), "");
    assert_eq!(store_contents(&dst), (vec![], vec![]), "a failed pull leaves nothing behind");
    assert!(!dst.root().join("partial").read_dir().unwrap().any(|_| true), "a wrong partial blob is not kept");
}

/// A lying registry — a manifest bigger than any real one, a manifest or a blob whose body never
/// ends, a blob longer than it says — costs one line, a bounded time and nothing in the store.
#[test]
fn a_lying_registry_is_refused_in_one_line_and_bounded_time_leaving_nothing() {
    if !tools() {
        return;
    }
    let (reg, name, (digest, size)) = registry_with_fixture();
    let repo_tag = name.split_once('/').unwrap().1.to_string();
    let cases = [
        ("/manifests/", Lie::HugeManifest(5 << 20), "larger than"),
        ("/manifests/", Lie::Endless, "larger than"),
        (digest.as_str(), Lie::Endless, &*format!("layer {digest}")),
        (digest.as_str(), Lie::LongerThanSaid(size), &*format!("layer {digest}")),
    ];
    for (pattern, lie, says) in cases {
        let liar = Liar::start(&reg.host(), pattern, lie.clone());
        let dst = Store::new();
        let start = Instant::now();
        let line = dst.fails(&["pull", &format!("{}/{repo_tag}", liar.host())]);
        let took = start.elapsed();
        assert!(liar.told() > 0, "{lie:?}: the lie was not asked for");
        assert!(line.contains(says) && line.trim().lines().count() == 1, "{lie:?}: {line}");
        assert!(took < Duration::from_secs(60), "{lie:?}: took {took:?}");
        assert_eq!(dst.ok(&["images", "-q"]), "", "{lie:?}");
        assert_eq!(store_contents(&dst), (vec![], vec![]), "{lie:?}: a failed pull leaves nothing behind");
    }
}

#[test]
fn login_checks_the_password_keeps_it_0600_and_logout_removes_it() {
    if !tools() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::start(RegistryOptions::new().tls().htpasswd(&[("ann", "s3cret pass")]));
    let host = reg.host();
    let cert_dir = reg.cert_dir();
    let certs = cert_dir.to_str().unwrap();
    let (src, name) = store_with_fixture(&host);
    let config = src.path(".docker/config.json");

    // A wrong password: one line, nothing saved.
    let line = src.fails(&["login", "-u", "ann", "-p", "wrong", "--cert-dir", certs, &host]);
    assert!(line.contains(&format!("{host}: unauthorized")), "{line}");
    assert!(!config.exists());
    // Without the CA: the TLS line, with the hint.
    let line = src.fails(&["login", "-u", "ann", "-p", "s3cret pass", &host]);
    assert!(line.contains("TLS handshake failed") && line.contains("--cert-dir"), "{line}");

    let mut login = src.cmd(&["login", "-u", "ann", "--password-stdin", "--cert-dir", certs, &host]);
    let mut child = login.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("ann:s3cret pass");
    assert_eq!(saved["auths"][&host]["auth"], auth.as_str());

    // The saved credentials serve push and pull; nothing prints the password.
    let out = src.run(&["push", "--progress", "plain", "--cert-dir", certs, &name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = [out.stdout, out.stderr].concat();
    assert!(!String::from_utf8_lossy(&shown).contains("s3cret"));
    src.ok(&["rmi", &name]);
    src.ok(&["pull", "--cert-dir", certs, &name]);

    assert_eq!(src.ok(&["logout", &host]), format!("Removing login credentials for {host}\n"));
    let saved: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(saved["auths"].get(&host).is_none(), "{saved}");
    assert_eq!(src.ok(&["logout", &host]), format!("Not logged in to {host}\n"));
    let line = src.fails(&["pull", "--cert-dir", certs, &name]);
    assert!(line.contains("unauthorized"), "{line}");

    // podman's auth.json is read too ($XDG_RUNTIME_DIR/containers/auth.json).
    let podman_auth = src.path("run/containers/auth.json");
    std::fs::create_dir_all(podman_auth.parent().unwrap()).unwrap();
    std::fs::write(&podman_auth, serde_json::json!({"auths": {&host: {"auth": auth}}}).to_string()).unwrap();
    src.ok(&["pull", "--cert-dir", certs, &name]);
}

#[test]
fn token_auth_pulls_anonymously_pushes_with_one_token_per_scope_and_denies_other_repositories() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().token(TokenAuth::new(&[("alice", "pw-a"), ("bob", "pw-b")])));
    let host = reg.host();
    let (src, _) = store_with_fixture(&host);
    let mine = format!("{host}/alice/multi:1");
    src.ok(&["tag", "oci-multi", &mine]);

    let line = src.fails(&["login", "-u", "alice", "-p", "nope", &host]);
    assert!(line.contains("unauthorized"), "{line}");
    assert_eq!(src.ok(&["login", "-u", "alice", "-p", "pw-a", &host]), "Login Succeeded\n");
    let before = reg.token_requests().len();
    src.ok(&["push", &mine]);
    let tokens: Vec<_> = reg.token_requests().into_iter().skip(before).collect();
    assert!(tokens.iter().all(|t| t.user.as_deref() == Some("alice") && t.status == 200), "{tokens:?}");
    assert!(tokens.len() <= 2, "one token per scope, reused across requests and threads: {tokens:?}");

    // bob's repository: docker's line.
    let theirs = format!("{host}/bob/multi:1");
    let line = src.fails(&["push", "oci-multi", &theirs]);
    assert!(line.contains("denied: requested access to the resource is denied"), "{line}");

    // Anyone may pull.
    let dst = Store::new();
    assert_eq!(dst.ok(&["pull", &mine]).trim(), mine);
    let anonymous = reg.token_requests().into_iter().rev().take(1).collect::<Vec<_>>();
    assert!(!anonymous[0].authorization, "{anonymous:?}");
}

/// podman's verdict on running `/bin/sh -c 'echo ok'` in `image`.
fn podman_runs(podman: &Podman, image: &str) {
    let out = podman.run(&["pull", "--tls-verify=false", image]);
    assert!(out.status.success(), "podman pull: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman.run(&["run", "--rm", "--network", "none", "--runtime", "runc", image, "/bin/sh", "-c", "echo ok"]);
    assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn root_what_strata_pushes_skopeo_podman_and_docker_pull_and_run() {
    if !common::require_root("root_what_strata_pushes_skopeo_podman_and_docker_pull_and_run")
        || !tools()
        || !require_tool("podman")
    {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    src.ok(&["push", &name]);
    let digest = manifest_digest(&src, &name);

    let sk = Skopeo::new();
    let copy = format!("oci:{}:x", sk.path("copy").display());
    sk.ok(&["copy", "--src-tls-verify=false", &format!("docker://{name}"), &copy]);
    let index: Value = serde_json::from_slice(&std::fs::read(sk.path("copy/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "skopeo copied the manifest byte for byte");

    podman_runs(&Podman::new(), &name);

    let Some(docker) = Dockerd::start_with(&["--insecure-registry", &reg.host()]) else { return };
    let out = docker.run(&["pull", &name]);
    assert!(out.status.success(), "docker pull: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Digest: {digest}")));
    let out = docker.run(&["run", "--rm", "--network", "none", &name, "/bin/sh", "-c", "echo ok"]);
    assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// An OCI layout whose `multi` tag is an index of two platforms: linux/amd64 is the `oci-multi`
/// fixture, linux/arm64 the `oci-umoci` one. Returns the skopeo source name.
fn two_platform_layout(at: &std::path::Path) -> String {
    let blobs = at.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut entries = Vec::new();
    for (fixture, arch) in [("oci-multi", "amd64"), ("oci-umoci", "arm64")] {
        let dir = fixtures().join(fixture);
        for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), blobs.join(e.file_name())).unwrap();
        }
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let m = &index["manifests"][0];
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m["digest"], "size": m["size"],
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries,
    }))
    .unwrap();
    let digest = sha256(&list);
    std::fs::write(blobs.join(&digest[7..]), &list).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": list.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]});
    std::fs::write(at.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    std::fs::write(at.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:multi", at.display())
}

#[test]
fn root_strata_pulls_and_runs_what_skopeo_pushed_oci_docker_zstd_and_two_platforms() {
    if !common::require_root("root_strata_pulls_and_runs_what_skopeo_pushed_oci_docker_zstd_and_two_platforms")
        || !tools()
    {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let host = reg.host();
    let sk = Skopeo::new();
    let push = |extra: &[&str], src: &str, repo: &str| -> String {
        let dest = format!("{host}/{repo}");
        let target = format!("docker://{dest}");
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend([src, &target]);
        sk.ok(&args);
        dest
    };
    // zstd first: skopeo would otherwise reuse the gzip blobs it already pushed.
    let zstd = push(&["--format", "oci", "--dest-compress", "--dest-compress-format", "zstd"], &fixture(), "sk/zstd:1");
    let oci = push(&["--format", "oci"], &fixture(), "sk/oci:1");
    let docker = push(&["--format", "v2s2"], &fixture(), "sk/docker:1");
    let index = push(&["--all"], &two_platform_layout(&sk.path("index")), "sk/index:1");

    let store = Store::new();
    for image in [&oci, &docker, &zstd, &index] {
        assert_eq!(store.ok(&["pull", image]).trim(), image.as_str());
        assert_eq!(store.ok(&["run", "--rm", image, "/bin/sh", "-c", "echo ok"]), "ok\n", "{image}");
    }
    let v = inspect(&store, &docker);
    assert_eq!(v["ManifestMediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert!(
        inspect(&store, &zstd)["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["MediaType"].as_str().unwrap().ends_with("+zstd"))
    );
    // The same content whichever way it came: one id.
    let id = |i: &str| inspect(&store, i)["Id"].as_str().unwrap().to_string();
    assert_eq!(id(&oci), id(&index), "the host's platform (amd64) is the oci-multi fixture");
    assert_eq!(id(&oci), id(&docker));

    let other = Store::new();
    other.ok(&["pull", "--platform", "linux/arm64", &index]);
    let umoci: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("oci-umoci/index.json")).unwrap()).unwrap();
    let umoci_manifest = umoci["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(manifest_digest(&other, &index), umoci_manifest);
    let line = other.fails(&["pull", "--platform", "linux/s390x", &index]);
    assert!(line.contains("no image for platform linux/s390x") && line.contains("linux/amd64, linux/arm64"), "{line}");
}

/// `n` bytes no compressor can shrink (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn file_size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Waits until `cond` holds (panics after a minute).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_download_cut_off_is_resumed_with_a_range_request_by_the_next_run_and_the_next_try() {
    if !tools() {
        return;
    }
    let mut reg = Registry::start(RegistryOptions::new());
    let big = layer(&[("big", &noise(48 << 20))]);
    let small = layer(&[("small", b"small\n")]);
    let (digest, size) = (sha256(&big.blob), big.blob.len() as u64);
    let src = Store::new();
    let name = format!("{}/fx/big:1", reg.host());
    let dir = layout(&src.path("layout"), &[(&name, vec![&small, &big])]);
    src.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    src.ok(&["push", &name]);
    // Pulls go through a proxy slow enough to be caught in the middle of the big layer.
    let proxy = Throttle::start(&reg.host());
    let via = format!("{}/fx/big:1", proxy.host());
    let partial_of = |s: &Store| s.root().join("partial").join(format!("sha256-{}", &digest[7..]));

    // strata killed: the next run asks only for the rest.
    proxy.set_rate(8 << 20);
    let dst = Store::new();
    let mut child = dst.cmd(&["pull", &via]).spawn().unwrap();
    wait_for("the first 8 MiB", || file_size(&partial_of(&dst)) > 8 << 20);
    child.kill().unwrap();
    child.wait().unwrap();
    let have = file_size(&partial_of(&dst));
    assert!(have < size, "the download was to be cut off");
    proxy.set_rate(0);
    dst.ok(&["pull", &via]);
    let last = reg.blob_gets(&digest).pop().unwrap();
    assert_eq!((last.status, last.offset, last.written), (206, Some(have), size - have), "{last:?}");
    assert!(!partial_of(&dst).exists());
    assert_eq!(dst.ok(&["tree", &via]).replace(&proxy.host(), "H"), src.ok(&["tree", &name]).replace(&reg.host(), "H"));

    // The registry killed and restarted: the same pull's next try asks only for the rest.
    proxy.set_rate(8 << 20);
    let again = Store::new();
    let child = again
        .cmd(&["pull", &via])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first 8 MiB", || file_size(&partial_of(&again)) > 8 << 20);
    reg.kill();
    proxy.cut();
    std::thread::sleep(Duration::from_millis(300));
    reg.restart();
    proxy.set_rate(0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = reg.blob_gets(&digest).pop().unwrap();
    let offset = last.offset.unwrap();
    assert!(last.status == 206 && offset > 0 && last.written == size - offset, "{last:?}");
    assert_eq!(again.ok(&["images", "-q", "--no-trunc"]), dst.ok(&["images", "-q", "--no-trunc"]));
}

#[test]
fn root_a_user_pulls_into_their_own_store() {
    if !common::require_root("root_a_user_pulls_into_their_own_store") || !tools() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    src.ok(&["push", &name]);
    let user = Store::as_user(1000);
    assert_eq!(user.ok(&["pull", &name]), format!("{name}\n"));
    assert_eq!(std::fs::metadata(user.root().join("index.json")).unwrap().uid(), 1000);
    assert_eq!(user.ok(&["tree", &name]), src.ok(&["tree", &name]));
}

#[test]
fn pull_and_push_show_dockers_progress_lines_on_a_terminal() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    let shown = src.on_tty(&["push", &name]);
    for want in ["The push refers to repository", ": Preparing", ": Pushing [", ": Pushed", "1: digest: sha256:"] {
        assert!(shown.contains(want), "{want:?} not shown:\n{shown}");
    }
    let dst = Store::new();
    let shown = dst.on_tty(&["pull", &name]);
    for want in [
        "1: Pulling from fx/multi",
        ": Pulling fs layer",
        ": Downloading [",
        ": Verifying Checksum",
        ": Download complete",
        ": Extracting",
        ": Pull complete",
        "Digest: sha256:",
        &format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(shown.contains(want), "{want:?} not shown:\n{shown}");
    }
    assert!(shown.trim_end().ends_with(&name), "{shown}");
    let shown = dst.on_tty(&["pull", "-q", &name]);
    assert_eq!(shown.trim(), name, "-q shows only the reference");
}

#[test]
fn pull_all_tags_and_the_errors_a_user_can_act_on() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let (src, name) = store_with_fixture(&reg.host());
    let two = format!("{}/fx/multi:2", reg.host());
    src.ok(&["tag", &name, &two]);
    src.ok(&["push", &name]);
    src.ok(&["push", &two]);
    let dst = Store::new();
    assert_eq!(dst.ok(&["pull", "-a", &format!("{}/fx/multi", reg.host())]), format!("{}/fx/multi\n", reg.host()));
    let mut names: Vec<String> = images(&dst).into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec![name.clone(), two.clone()]);

    let line = dst.fails(&["pull", &format!("{}/fx/multi:nope", reg.host())]);
    assert!(line.contains(&format!("manifest for {}/fx/multi:nope not found: manifest unknown", reg.host())), "{line}");
    let line = dst.fails(&["pull", "strata-no-such-host.invalid/a/b:1"]);
    assert!(line.contains("strata-no-such-host.invalid: unknown host"), "{line}");
    // A web server that is no registry (the harness's own proxy to nothing).
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nothing.local_addr().unwrap().port();
    drop(nothing);
    let line = dst.fails(&["pull", &format!("127.0.0.1:{port}/a:1")]);
    assert!(line.contains("connection refused"), "{line}");
    let line = dst.fails(&["pull", "Bad/Name"]);
    assert!(line.contains("invalid reference format"), "{line}");
}

#[test]
fn a_server_that_is_not_a_registry_is_named() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().token(TokenAuth::new(&[("a", "b")])));
    // The token server answers HTTP, but not the registry API.
    let realm = reg.token_realm();
    let host = realm.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let line = Store::new().fails(&["pull", &format!("{host}/a:1")]);
    assert!(line.contains(&format!("{host} does not speak the registry API v2")), "{line}");
}

#[test]
fn blob_redirects_are_followed_without_the_credentials() {
    if !tools() {
        return;
    }
    // The registry stores blobs; a plain file server (the "CDN") serves them from its storage.
    let cdn_root = tempfile::tempdir().unwrap();
    let cdn = common::registry::FileServer::start(cdn_root.path().to_path_buf());
    let opts = RegistryOptions::new().htpasswd(&[("ann", "pw")]).redirect_blobs_to(&cdn.url());
    let reg = Registry::start(opts);
    std::fs::remove_dir(cdn_root.path()).unwrap();
    std::os::unix::fs::symlink(reg.storage(), cdn_root.path()).unwrap();
    let (src, name) = store_with_fixture(&reg.host());
    src.ok(&["push", "--creds", "ann:pw", &name]);

    let dst = Store::new();
    assert_eq!(dst.ok(&["pull", "--creds", "ann:pw", &name]), format!("{name}\n"));
    assert_eq!(dst.ok(&["tree", &name]), src.ok(&["tree", &name]));
    let served = cdn.requests();
    assert_eq!(served.iter().filter(|r| r.status == 200).count(), 6, "5 layers and the config: {served:?}");
    assert!(served.iter().all(|r| !r.authorization), "credentials went to another host: {served:?}");
}

#[test]
fn an_expired_token_is_renewed_in_the_middle_of_a_pull() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().token(TokenAuth::new(&[("alice", "pw")]).expires_in(2)));
    let big = layer(&[("big", &noise(16 << 20))]);
    let small = layer(&[("small", b"small\n")]);
    let src = Store::new();
    let name = format!("{}/alice/slow:1", reg.host());
    let dir = layout(&src.path("layout"), &[(&name, vec![&big, &small])]);
    src.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    src.ok(&["push", "--creds", "alice:pw", &name]);
    // One layer at a time, the big one first at 4 MiB/s: the small one is asked for after the
    // token of the first requests has expired.
    let proxy = Throttle::start(&reg.host());
    proxy.set_rate(4 << 20);
    let via = format!("{}/alice/slow:1", proxy.host());
    let before = reg.token_requests().len();
    let dst = Store::new();
    dst.ok(&["pull", "--creds", "alice:pw", "--max-concurrent-downloads", "1", &via]);
    let fetched: Vec<_> = reg.token_requests().into_iter().skip(before).collect();
    assert!(fetched.len() >= 2, "the token was renewed: {fetched:?}");
    assert!(fetched.iter().all(|t| t.status == 200 && t.user.as_deref() == Some("alice")), "{fetched:?}");
    assert!(reg.requests().iter().filter(|r| r.status == 401).count() <= 2, "no request was refused for an old token");
}

#[test]
fn an_upload_cut_off_asks_where_it_stands_and_is_taken_up_again() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let proxy = Throttle::start(&reg.host());
    let big = layer(&[("big", &noise(32 << 20))]);
    let src = Store::new();
    let via = format!("{}/fx/up:1", proxy.host());
    let dir = layout(&src.path("layout"), &[(&via, vec![&big])]);
    src.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    proxy.set_rate(8 << 20);
    let child = src
        .cmd(&["push", &via])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("12 MiB sent", || proxy.to_upstream() > 12 << 20);
    proxy.cut();
    proxy.set_rate(0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The push asked where the upload stood; distribution drops an upload whose chunk broke
    // off half-written, so the blob went up again in a new one.
    let requests = reg.requests();
    let asked = requests.iter().filter(|r| r.method == "GET" && r.uri.contains("/blobs/uploads/")).count();
    assert!(asked >= 1, "{requests:?}");
    let started = requests.iter().filter(|r| r.method == "POST" && r.uri.ends_with("/blobs/uploads/")).count();
    assert!(started >= 2, "{requests:?}");
    let dst = Store::new();
    let direct = format!("{}/fx/up:1", reg.host());
    dst.ok(&["pull", &direct]);
    assert_eq!(
        dst.ok(&["tree", &direct]).replace(&reg.host(), "H"),
        src.ok(&["tree", &via]).replace(&proxy.host(), "H")
    );
}

#[test]
fn the_store_answers_during_a_pull_and_two_pulls_of_one_image_fetch_each_blob_once() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let big = layer(&[("big", &noise(24 << 20))]);
    let src = Store::new();
    let name = format!("{}/fx/shared:1", reg.host());
    let dir = layout(&src.path("layout"), &[(&name, vec![&big])]);
    src.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    src.ok(&["push", &name]);
    let proxy = Throttle::start(&reg.host());
    proxy.set_rate(8 << 20);
    let via = format!("{}/fx/shared:1", proxy.host());

    let dst = Store::new();
    dst.load_fixture("oci-multi");
    let piped = |c: &mut std::process::Command| {
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let first = piped(&mut dst.cmd(&["pull", &via]));
    let partial = dst.root().join("partial").join(format!("sha256-{}", &sha256(&big.blob)[7..]));
    wait_for("the download to start", || file_size(&partial) > 1 << 20);
    let second = piped(&mut dst.cmd(&["pull", &via]));
    // Readers are not held up by the downloads.
    let started = Instant::now();
    assert!(dst.ok(&["images"]).contains("oci-multi"));
    dst.ok(&["tree", "oci-multi"]);
    assert!(started.elapsed() < Duration::from_secs(2), "readers waited for the pull");
    assert!(file_size(&partial) < big.blob.len() as u64, "the pull was still downloading");
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{via}\n"));
    }
    assert_eq!(reg.blob_gets(&sha256(&big.blob)).len(), 1, "the second pull waited for the first one's download");
}

#[test]
fn plain_tar_layers_are_gzipped_on_the_way_and_compression_can_be_chosen() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new());
    let src = Store::new();
    src.load_fixture("multi.docker-save.tar");
    let name = format!("{}/fx/legacy:1", reg.host());
    src.ok(&["tag", "localhost/fx/multi", &name]);
    let id = inspect(&src, &name)["Id"].clone();
    let digestfile = src.path("digest");
    let out = src.ok(&["push", "--digestfile", digestfile.to_str().unwrap(), &name]);
    let digest = std::fs::read_to_string(&digestfile).unwrap();
    assert!(out.starts_with(&format!("1: digest: {digest} size: ")), "{out}");
    // The store now lists the gzipped blobs the registry has, under the same image id.
    let v = inspect(&src, &name);
    assert_eq!((v["Id"].clone(), v["ManifestDigest"].as_str().unwrap()), (id.clone(), digest.as_str()));
    assert!(
        v["Layers"].as_array().unwrap().iter().all(|l| l["MediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip")
    );

    let zstd = format!("{}/fx/legacy:zstd", reg.host());
    src.ok(&["push", "--compression", "zstd", &name, &format!("docker://{zstd}")]);
    let dst = Store::new();
    dst.ok(&["pull", &zstd]);
    let v = inspect(&dst, &zstd);
    assert_eq!(v["Id"], id);
    assert!(
        v["Layers"].as_array().unwrap().iter().all(|l| l["MediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd")
    );
    assert_eq!(dst.ok(&["tree", &zstd]), src.ok(&["tree", &name]));
    let line = src.fails(&["push", &name, "oci:/tmp/x"]);
    assert!(line.contains("use `strata save`"), "{line}");
}

#[test]
fn a_wrong_password_on_push_and_pull_is_unauthorized_not_denied() {
    if !tools() {
        return;
    }
    let reg = Registry::start(RegistryOptions::new().tls().htpasswd(&[("ann", "right")]));
    let (src, name) = store_with_fixture(&reg.host());
    let certs = reg.cert_dir();
    let certs = certs.to_str().unwrap();
    for verb in ["push", "pull"] {
        let line = src.fails(&[verb, "--creds", "ann:wrong", "--cert-dir", certs, &name]);
        assert!(line.contains(&format!("{}: unauthorized", reg.host())) && !line.contains("denied"), "{verb}: {line}");
    }
}
