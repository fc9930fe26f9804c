//! The fuzz targets' entry functions, shared by the AFL++ harnesses (`fuzz/src/bin/*.rs`) and
//! the corpus replay test (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes and panics only
//! when an invariant of Strata breaks (a panic inside Strata counts too): a hostile input must
//! end in a clean `Err` whose message is one line, never in a write outside the target dir.
//!
//! Setup failures of the harness itself (a temp dir that cannot be made) also panic: they
//! would make every input look like a crash, which shows at once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use strata::build::{parser, shell};
use strata::fs::layers::{Stack, StackSpec};
use strata::fs::{Config, Overlay};
use strata::image::digest::{Algorithm, Digest};
use strata::image::pipeline::{self, UnpackTo};
use strata::image::spec::{self, DockerArchiveEntry, ImageConfig, ImageIndex, ImageManifest, MediaType};
use strata::image::unpack::{self, Options};
use strata::image::{compress, reference};
use strata::registry::platform::PlatformSpec;
use strata::registry::reference::Reference;

/// A target's entry function.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz` and the corpus dirs name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("unpack", unpack_tar),
    ("layer", layer_blob),
    ("union", union_of_layers),
    ("oci_json", oci_json),
    ("reference", image_reference),
    ("dockerfile", dockerfile),
];

/// Separates the layer tars of a `union` input (bottom first).
pub const LAYER_SEPARATOR: &[u8] = b"\n==LAYER==\n";

/// A message shown to a user must be one line.
fn one_line(what: &str, msg: &str) {
    assert!(!msg.contains('\n') && !msg.contains('\r'), "{what} is not one line: {msg:?}");
}

/// A temp root holding `layer` (the target) and `outside` (a sentinel dir with one file that
/// hostile entries aim at with `../outside`): whatever unpacking does, the root must hold
/// exactly these two afterwards and `outside` must be untouched.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::Builder::new().prefix("strata-fuzz-").tempdir().expect("temp dir");
        fs::create_dir(root.path().join("layer")).expect("layer dir");
        fs::create_dir(root.path().join("outside")).expect("outside dir");
        fs::write(root.path().join("outside/secret"), b"keep").expect("sentinel");
        Sandbox { root }
    }

    fn layer(&self) -> File {
        File::open(self.root.path().join("layer")).expect("open layer dir")
    }

    /// Panics when anything appeared, went or changed outside `layer`.
    fn check_nothing_escaped(&self) {
        let root = self.root.path();
        let mut names: Vec<_> = fs::read_dir(root).expect("read root").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        assert_eq!(names, ["layer", "outside"], "unpacking wrote beside the target dir");
        let outside: Vec<_> =
            fs::read_dir(root.join("outside")).expect("read outside").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(outside, ["secret"], "unpacking wrote into a dir outside the target");
        let secret = fs::symlink_metadata(root.join("outside/secret")).expect("stat sentinel");
        assert!(secret.is_file() && secret.len() == 4, "unpacking changed a file outside the target");
        assert_eq!(fs::read(root.join("outside/secret")).expect("read sentinel"), b"keep");
    }

    /// Lets the temp dir go even when an entry made a directory unwritable.
    fn clear(self) {
        make_writable(self.root.path());
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn check_unpacked(r: Result<unpack::Unpacked, unpack::UnpackError>) {
    match r {
        Ok(u) => u.warnings.iter().for_each(|w| one_line("a warning", w)),
        Err(e) => one_line("an unpack error", &e.to_string()),
    }
}

/// A layer tar (uncompressed) unpacked by [`unpack::unpack`].
pub fn unpack_tar(data: &[u8]) {
    let sandbox = Sandbox::new();
    let layer = sandbox.layer();
    check_unpacked(unpack::unpack(data, layer.as_fd(), Options::for_current_user()));
    sandbox.check_nothing_escaped();
    sandbox.clear();
}

/// A layer blob (plain, gzip or zstd) through the whole load pipeline: store, inflate, hash,
/// unpack on their threads. A plain tar read to its end has its own digest as diff_id.
pub fn layer_blob(data: &[u8]) {
    let sandbox = Sandbox::new();
    let layer = sandbox.layer();
    let to = UnpackTo { root: layer.as_fd(), opts: Options::for_current_user() };
    let mut stored = Vec::new();
    let out = pipeline::run(&mut &data[..], &mut stored, Algorithm::Sha256, Some(to));
    assert!(out.blob.is_ok(), "storing an in-memory blob failed: {:?}", out.blob);
    assert_eq!(stored, data, "the stored blob differs from the one read");
    match out.tar {
        Ok(tar) => {
            tar.unpacked.warnings.iter().for_each(|w| one_line("a warning", w));
            if matches!(tar.compression, strata::image::source::Compression::None) {
                assert_eq!(tar.diff_id, Digest::sha256_of(data), "diff_id of a plain tar is not its digest");
            }
        }
        Err(e) => one_line("a layer error", &e.to_string()),
    }
    sandbox.check_nothing_escaped();
    sandbox.clear();
}

/// Up to four layer tars separated by [`LAYER_SEPARATOR`] (bottom first), each unpacked as a
/// lower layer (what fails to unpack stays as far as it got), then the merged read-only view
/// walked as a mount would be: every listed name can be looked up and has the listed type,
/// no whiteout or opaque marker is ever shown, files read to their size, symlinks read back.
pub fn union_of_layers(data: &[u8]) {
    let parts = split(data, LAYER_SEPARATOR);
    let root = tempfile::Builder::new().prefix("strata-fuzz-").tempdir().expect("temp dir");
    let mut lowers = Vec::new();
    for (i, part) in parts.iter().take(4).enumerate() {
        let dir = root.path().join(format!("l{i}"));
        fs::create_dir(&dir).expect("layer dir");
        let layer = File::open(&dir).expect("open layer dir");
        check_unpacked(unpack::unpack(*part, layer.as_fd(), Options::for_current_user()));
        make_writable(&dir);
        lowers.push(dir);
    }
    lowers.reverse();
    let spec = StackSpec { lowers, upper: None, work: None, userxattr: !is_root(), volatile: false };
    let stack = Stack::open(&spec).expect("opening the layers");
    let ov = Overlay::new(stack, Config::default()).expect("overlay");
    let mut budget = 2000;
    walk(&ov, strata::fs::inode::ROOT, 0, &mut budget);
    drop(ov);
    make_writable(root.path());
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(sep.len()).position(|w| w == sep) {
        parts.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    parts.push(rest);
    parts
}

fn walk(ov: &Overlay, dir: u64, depth: usize, budget: &mut usize) {
    use rustix::fs::FileType;
    let entries = match ov.list_dir(dir) {
        Ok(e) => e,
        Err(e) => panic!("listing a merged dir failed: {e}"),
    };
    for e in entries {
        if e.name == "." || e.name == ".." {
            continue;
        }
        *budget = budget.saturating_sub(1);
        if *budget == 0 {
            return;
        }
        let name = e.name.as_bytes();
        assert!(!name.starts_with(b".wh."), "a whiteout marker is shown: {:?}", e.name);
        let (node, _) = match ov.lookup(dir, &e.name) {
            Ok(found) => found,
            Err(errno) => panic!("{:?} is listed but its lookup fails: {errno}", e.name),
        };
        assert_eq!(node.kind, e.kind, "{:?}: readdir and lookup disagree on the type", e.name);
        let attr = ov.getattr(node.nodeid, None).expect("getattr of a found name");
        match node.kind {
            FileType::Directory if depth < 16 => walk(ov, node.nodeid, depth + 1, budget),
            FileType::RegularFile => {
                let fh = ov.open(node.nodeid, libc::O_RDONLY, None).expect("open a file of the view");
                let data = ov.read(fh, 0, 1 << 16).expect("read a file of the view");
                ov.release(fh);
                assert_eq!(data.len() as u64, attr.size.min(1 << 16), "{:?}: read and stat disagree", e.name);
            }
            FileType::Symlink => {
                let target = ov.readlink(node.nodeid).expect("readlink of a symlink of the view");
                assert_eq!(target.len() as u64, attr.size, "{:?}: symlink size", e.name);
            }
            _ => {}
        }
    }
}

/// Bytes parsed as every OCI/Docker JSON document an image brings, then used as the loader
/// uses them: names, digests, media types, platform choice.
pub fn oci_json(data: &[u8]) {
    let _ = spec::looks_like_index(data);
    if let Ok(m) = serde_json::from_slice::<ImageManifest>(data) {
        for d in m.layers.iter().chain([&m.config]) {
            descriptor(d);
        }
    }
    if let Ok(i) = serde_json::from_slice::<ImageIndex>(data) {
        i.manifests.iter().for_each(descriptor);
        let _ = PlatformSpec::host().pick(&i.manifests);
        for p in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
            if let Ok(spec) = PlatformSpec::parse(p) {
                let _ = spec.pick(&i.manifests);
            }
        }
    }
    if let Ok(c) = serde_json::from_slice::<ImageConfig>(data) {
        let _ = format!("{c:?}");
    }
    if let Ok(entries) = serde_json::from_slice::<Vec<DockerArchiveEntry>>(data) {
        for e in entries {
            if let Err(err) = e.names() {
                one_line("a name error", &err.to_string());
            }
            if let Some(d) = e.named_config_digest() {
                assert_eq!(Digest::parse(&d.to_string()).ok(), Some(d.clone()), "digest round trip");
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        digest_text(s.trim());
    }
}

fn descriptor(d: &spec::Descriptor) {
    let text = d.media_type.as_str().to_string();
    assert_eq!(MediaType::from(text.clone()).as_str(), text, "media type round trip");
    let _ = compress::compression_of(&d.media_type);
    let _ = d.ref_name().map(reference::Name::parse);
    assert_eq!(Digest::parse(&d.digest.to_string()).ok().as_ref(), Some(&d.digest), "digest round trip");
}

fn digest_text(s: &str) {
    match Digest::parse(s) {
        Ok(d) => {
            assert_eq!(d.to_string(), s, "a parsed digest prints differently");
            let _ = d.short();
            assert_eq!(d.of_same_kind(b"x").algorithm(), d.algorithm());
        }
        Err(e) => one_line("a digest error", &e.to_string()),
    }
}

/// Text parsed as an image reference, both as `pull` (registry) and the store (names) read it;
/// what parses prints back to something that parses to the same.
pub fn image_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Reference::parse(s) {
        Ok(r) => {
            let _ = (r.object(), r.api_host(), r.full_repository(), r.familiar_repository());
            for shown in [r.familiar(), r.to_string()] {
                let again =
                    Reference::parse(&shown).unwrap_or_else(|e| panic!("{s:?} parsed but {shown:?} does not: {e}"));
                assert_eq!(again, r, "{s:?} printed as {shown:?} reads back differently");
            }
            if let Some(Ok(n)) = r.store_name() {
                let _ = (n.repository(), n.tag());
            }
            let _ = r.with_tag("latest").familiar();
        }
        Err(e) => one_line("a reference error", &e.to_string()),
    }
    match reference::Name::parse(s) {
        Ok(n) => {
            let again = reference::Name::parse(&n.to_string())
                .unwrap_or_else(|e| panic!("{s:?} parsed but {:?} does not: {e}", n.to_string()));
            assert_eq!(again, n, "name round trip of {s:?}");
        }
        Err(e) => one_line("a name error", &e.to_string()),
    }
    let _ = reference::repository_from_file_name(s);
    let _ = strata::registry::reference::registry_host(s);
}

/// A Dockerfile parsed, dumped, and each instruction's words expanded by the shell lexer in
/// every mode with a few variables set.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let df = match parser::parse(text) {
        Ok(df) => df,
        Err(e) => return one_line("a parse error", &e.to_string()),
    };
    let mut vars = BTreeMap::new();
    vars.insert("A".to_string(), "a b".to_string());
    vars.insert("EMPTY".to_string(), String::new());
    vars.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
    for ins in &df.instructions {
        let _ = ins.dump();
        // ENV and ARG set variables for what follows, as in a build (ENV: name, value, separator…).
        match ins.command().as_str() {
            "env" => {
                for kv in ins.args.words.chunks(3) {
                    if let [k, v, ..] = kv {
                        vars.insert(k.clone(), v.clone());
                    }
                }
            }
            "arg" => {
                for w in &ins.args.words {
                    let (k, v) = w.split_once('=').unwrap_or((w, ""));
                    vars.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        for (raw_quotes, raw_escapes, skip_unset, skip_quotes) in
            [(false, false, false, false), (true, true, true, false), (false, false, false, true)]
        {
            let lex = shell::Lexer { escape: df.escape, raw_quotes, raw_escapes, skip_unset, skip_quotes };
            for w in ins.args.words.iter().chain(ins.flags.iter()) {
                if let Err(e) = lex.expand(w, &vars) {
                    let _ = e.to_string();
                }
            }
        }
        for h in &ins.heredocs {
            let _ = shell::Lexer::new(df.escape).word(&h.content, &vars);
        }
    }
}

/// Runs `target` on `data`, for the harnesses and the replay test.
pub fn run(target: &str, data: &[u8]) {
    match TARGETS.iter().find(|(name, _)| *name == target) {
        Some((_, f)) => f(data),
        None => panic!("no fuzz target {target:?}"),
    }
}
