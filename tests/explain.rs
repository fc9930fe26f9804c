//! Integration tests of `strata explain`, `strata layers` and `strata tree` (issue 7): drive the
//! binary on a temp `--root` holding the `oci-multi` fixture (made by buildah: a whiteout
//! followed by a re-creation, a dir replaced by a file, a file replaced by an opaque dir, a
//! deleted symlink, a deep whiteout), and a container made by hand on top of it (copy-ups, a
//! whiteout, an opaque dir, a redirect). The counts of `layers` are checked against the `tar tv`
//! listing of the fixture's layers; the pictures are parsed as XML and rendered by headless
//! Chromium (Debian's `chromium`), which must be installed under `CI=true`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::store::{Store, fixtures, in_ci};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A store holding the `oci-multi` fixture, and scratch space.
struct Env(Store);

impl std::ops::Deref for Env {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

const IMAGE: &str = "oci-multi:latest";

impl Env {
    fn new() -> Env {
        let env = Env(Store::new());
        env.load_fixture("oci-multi");
        env
    }

    /// Runs and expects success; returns stdout, which must hold no colour off a terminal.
    fn ok(&self, args: &[&str]) -> String {
        let stdout = self.0.ok(args);
        assert!(!stdout.contains('\x1b'), "no colour off a terminal:\n{stdout}");
        stdout
    }

    fn explain(&self, target: &str, path: &str) -> String {
        self.ok(&["explain", target, path])
    }
}

/// The rows of a `tree` listing: LAYER column, entry name (without the branch), note.
fn tree_rows(tree: &str) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for line in tree.lines().skip(1) {
        let label = line.split_whitespace().next().unwrap().to_string();
        let rest = line[label.len()..].trim_start();
        let rest = rest.rsplit_once("── ").map(|(_, r)| r).unwrap_or(rest);
        let (name, note) = match rest.strip_suffix(')').and_then(|r| r.rsplit_once("  (")) {
            Some((name, note)) => (name, note),
            None => (rest, ""),
        };
        rows.push((label, name.to_string(), note.to_string()));
    }
    rows
}

/// The LAYER column of the `tree` row for entry `name` whose note contains `note` (empty: no note).
fn tree_layer(tree: &str, name: &str, note: &str) -> String {
    let rows = tree_rows(tree);
    let row = rows.iter().find(|(_, n, w)| n == name && if note.is_empty() { w.is_empty() } else { w.contains(note) });
    row.unwrap_or_else(|| panic!("no row for {name:?} ({note:?}) in:\n{tree}")).0.clone()
}

// ---------------------------------------------------------------------------------------------
// The fixture's cases

#[test]
fn explain_names_the_layer_of_every_fixture_case() {
    let env = Env::new();
    let out = env.explain(IMAGE, "/data/remove-me.txt");
    assert!(out.contains("Shown from layer 5 of 5 (04fec36bdd4a): a file of 7 bytes"), "re-created file:\n{out}");
    assert!(out.contains("layer 3 (374562354561): a whiteout"), "{out}");
    assert!(out.contains("layer 1 (0adb58bb44b2): a file of 10 bytes"), "{out}");
    assert!(out.contains("made by  /bin/sh -c set -e; echo reborn"), "history line:\n{out}");
    assert!(out.contains("diff_id  sha256:04fec36bdd4a"), "{out}");

    let out = env.explain(IMAGE, "data/dir-to-file");
    assert!(out.contains("Shown from layer 5 of 5") && out.contains("a file of 11 bytes"), "dir -> file:\n{out}");
    assert!(out.contains("layer 1 (0adb58bb44b2): a directory"), "{out}");
    let out = env.explain(IMAGE, "data/dir-to-file/x");
    assert!(out.contains("Not seen: /data/dir-to-file is a file of 11 bytes") && out.contains("layer 5"), "{out}");

    let out = env.explain(IMAGE, "data/file-to-dir");
    assert!(out.contains("Shown from layer 5 of 5") && out.contains("an opaque directory"), "file -> dir:\n{out}");
    assert!(out.contains("layer 1 (0adb58bb44b2): a file of 13 bytes"), "{out}");
    assert!(env.explain(IMAGE, "data/file-to-dir/inner").contains("Shown from layer 5 of 5"));

    let out = env.explain(IMAGE, "data/link-abs");
    assert!(out.contains("Not seen: deleted by a whiteout in layer 5 (04fec36bdd4a)"), "deleted symlink:\n{out}");
    assert!(out.contains("layer 1 (0adb58bb44b2): a symlink to /data/keep.txt"), "{out}");

    let out = env.explain(IMAGE, "deep/a/b/c/file");
    assert!(out.contains("Not seen: deleted by a whiteout in layer 5"), "deep whiteout:\n{out}");
    assert!(env.explain(IMAGE, "deep/a/b/c/keep").contains("Shown from layer 1 of 5"));
    assert!(env.explain(IMAGE, "deep/a/b/c").contains("its entries come from layers 5, 1"));

    let out = env.explain(IMAGE, "opq/old1");
    assert!(out.contains("Not seen: /opq is opaque in layer 4"), "opaque dir:\n{out}");
    let out = env.explain(IMAGE, "data/dir-to-delete/sub/b");
    assert!(out.contains("/data/dir-to-delete was deleted by a whiteout in layer 3"), "deleted tree:\n{out}");

    // Paths resolve as a process inside would reach them: `..`, and symlinked directories.
    let out = env.explain(IMAGE, "/data/link-dir/passwd");
    assert!(out.starts_with("/data/link-dir/passwd in image oci-multi:latest\n"), "{out}");
    assert!(
        out.contains("It is /etc/passwd: /data/link-dir is a symlink to ../etc.\nShown from layer 1 of 5"),
        "{out}"
    );
    let out = env.explain(IMAGE, "/../data/./link-dir/../data//remove-me.txt");
    assert!(out.contains("It is /data/remove-me.txt: /data/link-dir is a symlink to ../etc."), "{out}");
    assert!(out.contains("Shown from layer 5 of 5"), "{out}");
    assert!(env.explain(IMAGE, "etc/../data/keep.txt").starts_with("/data/keep.txt in image"));
    let tree = env.ok(&["tree", IMAGE, "data/link-dir/../deep"]);
    assert_eq!(tree.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["5,1", "/deep"], "{tree}");

    let out = env.run(&["explain", IMAGE, "no/such/path"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no layer of image oci-multi:latest has this path"));
}

#[test]
fn tree_annotates_every_fixture_case_with_its_layer() {
    let env = Env::new();
    let tree = env.ok(&["tree", IMAGE, "/data"]);
    assert_eq!(tree.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["5,3,1", "/data"]);
    assert_eq!(tree_layer(&tree, "remove-me.txt", ""), "5");
    assert_eq!(tree_layer(&tree, "dir-to-file", ""), "5");
    assert_eq!(tree_layer(&tree, "file-to-dir/", "opaque"), "5");
    assert_eq!(tree_layer(&tree, "inner", ""), "5");
    assert_eq!(tree_layer(&tree, "keep.txt", ""), "3");
    assert!(!tree.contains("link-abs") && !tree.contains("dir-to-delete"), "deleted names are not seen:\n{tree}");

    let all = env.ok(&["tree", "--all", IMAGE, "data"]);
    assert_eq!(tree_layer(&all, "remove-me.txt", "whiteout"), "3");
    assert_eq!(tree_layer(&all, "remove-me.txt", "deleted by the whiteout of layer 3"), "1");
    assert_eq!(tree_layer(&all, "dir-to-file/", "shadowed by layer 5"), "1");
    assert_eq!(tree_layer(&all, "file-to-dir", "shadowed by layer 5"), "1");
    assert_eq!(tree_layer(&all, "link-abs", "whiteout"), "5");
    assert_eq!(tree_layer(&all, "link-abs -> /data/keep.txt", "deleted by the whiteout of layer 5"), "1");
    assert_eq!(tree_layer(&all, "x", "hidden"), "1");

    let deep = env.ok(&["tree", "-a", IMAGE, "deep"]);
    assert_eq!(tree_layer(&deep, "c/", ""), "5,1");
    assert_eq!(tree_layer(&deep, "file", "whiteout"), "5");
    assert_eq!(tree_layer(&deep, "file", "deleted by the whiteout of layer 5"), "1");
    assert_eq!(tree_layer(&deep, "keep", ""), "1");
    let opq = env.ok(&["tree", "-a", IMAGE, "opq"]);
    assert_eq!(tree_layer(&opq, "old1", "hidden"), "1");
    assert_eq!(tree_layer(&opq, "new1", ""), "4");
}

#[test]
fn tree_has_colours_on_a_terminal_only() {
    let env = Env::new();
    if !common::store::require_tool("script") {
        return;
    }
    // `script` gives the command a terminal; NO_COLOR must be unset there.
    let line = format!("{} --root {} tree {IMAGE} /data", common::strata(), env.root().display());
    let out = Command::new("script").args(["-qec", &line, "/dev/null"]).env_remove("NO_COLOR").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    // Each layer has its colour: layer 1 blue (34), 3 yellow (33), 5 cyan (36).
    for (layer, name) in [("34", "big.bin"), ("33", "keep.txt"), ("36", "remove-me.txt")] {
        let painted = format!("\x1b[{layer}m{name}\x1b[0m");
        assert!(text.contains(&painted), "{name} is not in colour {layer}:\n{text:?}");
    }
    let plain = Command::new("script").args(["-qec", &line, "/dev/null"]).env("NO_COLOR", "1").output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains('\x1b'), "NO_COLOR turns colours off");
    assert!(!env.ok(&["tree", IMAGE, "/data"]).contains('\x1b'), "no colour into a pipe");
}

// ---------------------------------------------------------------------------------------------
// Counts against the tar listing

/// Added / modified / deleted / opaque per layer, computed from `expected/multi.layers.txt`
/// (`tar tv` of each layer) by replaying the listing: markers apply to the layers below.
fn counts_from_listing() -> Vec<[usize; 4]> {
    let text = fs::read_to_string(fixtures().join("expected/multi.layers.txt")).unwrap();
    let mut layers: Vec<Vec<(String, bool)>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("## layer") {
            layers.push(Vec::new());
        } else if let Some(layer) = layers.last_mut().filter(|_| !line.is_empty() && !line.starts_with('#')) {
            // mode owner size date time PATH[ -> target | link to other]
            let mut rest = line;
            for _ in 0..5 {
                rest = rest.trim_start();
                rest = &rest[rest.find(' ').unwrap()..];
            }
            let rest = &rest[1..];
            let path = rest.split(" -> ").next().unwrap().split(" link to ").next().unwrap();
            layer.push((path.trim_end_matches('/').to_string(), path.ends_with('/')));
        }
    }
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    let mut out = Vec::new();
    for entries in layers {
        let mut c = [0; 4];
        let (mut gone, mut opaque) = (Vec::new(), Vec::new());
        for (path, is_dir) in &entries {
            let (parent, name) =
                path.rsplit_once('/').map(|(p, n)| (format!("{p}/"), n)).unwrap_or((String::new(), path));
            match name.strip_prefix(".wh.") {
                Some(".wh..opq") => opaque.push(parent.clone()),
                Some(target) => gone.push(format!("{parent}{target}")),
                None => match seen.get(path) {
                    None => c[0] += 1,
                    Some(false) => c[1] += 1,
                    Some(true) if !is_dir => c[1] += 1,
                    Some(true) => {}
                },
            }
        }
        c[2] = gone.iter().filter(|g| seen.contains_key(*g)).count();
        c[3] = opaque.len();
        for g in &gone {
            seen.retain(|p, _| p != g && !p.starts_with(&format!("{g}/")));
        }
        for dir in &opaque {
            seen.retain(|p, _| !p.starts_with(dir.as_str()));
        }
        for (path, is_dir) in entries.iter().filter(|(p, _)| !p.rsplit('/').next().unwrap().starts_with(".wh.")) {
            if seen.get(path) != Some(&true) || !is_dir {
                seen.retain(|p, _| !p.starts_with(&format!("{path}/")));
            }
            seen.insert(path.clone(), *is_dir);
        }
        out.push(c);
    }
    out
}

#[test]
fn layers_counts_match_the_tar_listing() {
    let env = Env::new();
    let want = counts_from_listing();
    assert_eq!(want.len(), 5);
    assert_eq!(want[4], [2, 2, 2, 1], "layer 5 of the listing, as SEMANTICS.md reads it");
    let out = env.ok(&["layers", IMAGE]);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).take(5).map(|l| l.split_whitespace().collect()).collect();
    for row in &rows {
        let n: usize = row[0].parse().unwrap();
        let got: Vec<usize> = row[3..7].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(got, want[n - 1], "layer {n}: ADDED MODIFIED DELETED OPAQUE\n{out}");
    }
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), ["5", "4", "3", "2", "1"], "top first");
    // Layer 1's bytes no longer seen: keep.txt 5, remove-me.txt 10, dir-to-delete/{a,sub/b,sub/deeper/c}
    // 6, chmod-me.sh 24, setuid-file 7, opq/{old1,old2,sub/old3} 9, file-to-dir 13, dir-to-file/x 2,
    // deep/a/b/c/file 5.
    assert_eq!(rows[4][7], "81B", "{out}");
    assert!(rows[..4].iter().all(|r| r[7] == "0B"), "{out}");
    assert!(out.contains("Efficiency: 99.99 % (81B wasted of 3.031MB stored"), "{out}");

    let files = env.ok(&["layers", IMAGE, "--files", "5"]);
    for line in [
        "A  /data/remove-me.txt",
        "C  /data/dir-to-file",
        "C  /data/file-to-dir",
        "O  /data/file-to-dir",
        "A  /data/file-to-dir/inner",
        "D  /data/link-abs",
        "D  /deep/a/b/c/file",
    ] {
        assert!(files.lines().any(|l| l == line), "{line:?} missing from:\n{files}");
    }
    assert_eq!(files.lines().count(), 1 + 7, "{files}");
    assert!(env.run(&["layers", IMAGE, "--files", "9"]).status.code() == Some(1));
}

// ---------------------------------------------------------------------------------------------
// A container made by hand

/// Makes a whiteout for `path`: a character device 0/0, or a `.wh.` file where mknod is refused.
fn whiteout(path: &Path) {
    use rustix::fs::{FileType, Mode};
    if rustix::fs::mknodat(rustix::fs::CWD, path, FileType::CharacterDevice, Mode::empty(), 0).is_err() {
        let name = format!(".wh.{}", path.file_name().unwrap().to_str().unwrap());
        fs::write(path.with_file_name(name), b"").unwrap();
    }
}

/// Sets `overlay.NAME` in the trusted namespace, or the user one where that is refused.
fn overlay_xattr(path: &Path, name: &str, value: &[u8]) {
    let flags = rustix::fs::XattrFlags::empty();
    if rustix::fs::setxattr(path, format!("trusted.overlay.{name}").as_str(), value, flags).is_err() {
        rustix::fs::setxattr(path, format!("user.overlay.{name}").as_str(), value, flags).unwrap();
    }
}

/// The store's layer dir of the fixture's layer `n` (1-based).
fn layer_dir(env: &Env, n: usize) -> PathBuf {
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures().join("expected/multi.config.json")).unwrap()).unwrap();
    let diff_id = config["rootfs"]["diff_ids"][n - 1].as_str().unwrap();
    env.root().join("layers").join(diff_id.trim_start_matches("sha256:"))
}

/// A stopped container `demo` of the fixture whose upper dir holds: a copy-up with new data
/// (data/keep.txt), a metadata-only copy-up (data/chmod-me.sh, chmod 0700), a new file, a
/// whiteout (etc/passwd), an opaque dir (home/user, rm -rf + mkdir), and newdir renamed to moved
/// (redirect + whiteout).
fn container(env: &Env) -> String {
    let id = "5e".repeat(32);
    let dir = env.root().join("containers").join(&id);
    let up = dir.join("upper");
    for d in ["work", "merged", "upper/data", "upper/etc", "upper/home/user", "upper/moved"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(up.join("data/keep.txt"), b"more\nwritten in the container\n").unwrap();
    fs::copy(layer_dir(env, 3).join("data/chmod-me.sh"), up.join("data/chmod-me.sh")).unwrap();
    fs::set_permissions(up.join("data/chmod-me.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(up.join("data/new.txt"), b"new\n").unwrap();
    whiteout(&up.join("etc/passwd"));
    overlay_xattr(&up.join("home/user"), "opaque", b"y");
    fs::write(up.join("home/user/fresh.txt"), b"fresh\n").unwrap();
    overlay_xattr(&up.join("moved"), "redirect", b"/newdir");
    whiteout(&up.join("newdir"));
    let record = serde_json::json!({
        "id": id, "name": "demo", "image": IMAGE,
        "image_id": "sha256:c705b7f0dde0f9cc7cf484f3c66b4eddf90cf18fcfdd7339bd0853e63259c9e8",
        "created": "2026-11-23T18:00:00Z", "command": ["/bin/sh"], "state": {"status": "exited"}
    });
    fs::write(dir.join("container.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    id
}

#[test]
fn a_container_upper_layer_is_explained() {
    let env = Env::new();
    let id = container(&env);
    let out = env.explain("demo", "data/keep.txt");
    assert!(out.contains("in container demo (image oci-multi:latest)"), "{out}");
    assert!(out.contains("Shown from the container's upper layer"), "{out}");
    assert!(out.contains("Container: copied up from layer 3") && out.contains("its data differs"), "{out}");
    let out = env.explain(&id[..8], "data/chmod-me.sh");
    assert!(out.contains("a metadata change only (mode 0755 -> 0700); the data is the same"), "{out}");
    let out = env.explain("demo", "data/new.txt");
    assert!(out.contains("Container: new: the container created it"), "{out}");
    let out = env.explain("demo", "data/big.bin");
    assert!(out.contains("Shown from layer 1 of 5") && out.contains("Container: not changed"), "{out}");
    let out = env.explain("demo", "etc/passwd");
    assert!(out.contains("Not seen: deleted in the container, by a whiteout in the container's upper layer"), "{out}");
    let out = env.explain("demo", "home/user/owned.txt");
    assert!(out.contains("Not seen: /home/user is opaque in the container's upper layer"), "{out}");
    assert!(out.contains("layer 2 (c9419c40732c) has it"), "{out}");
    let out = env.explain("demo", "moved");
    assert!(out.contains("Container: renamed from /newdir"), "{out}");
    let out = env.explain("demo", "moved/with/nested/file");
    assert!(out.contains("Shown from layer 3 of 5") && out.contains("Container: not changed"), "{out}");
    assert!(env.run(&["explain", "demo", "newdir/with"]).status.code() == Some(0));

    let layers = env.ok(&["layers", "demo"]);
    let top: Vec<&str> = layers.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(top[..8], ["upper", "-", "64B", "3", "2", "2", "1", "0B"], "{layers}");
    let tree = env.ok(&["tree", "-a", "demo", "/"]);
    assert_eq!(tree_layer(&tree, "keep.txt", ""), "upper");
    assert_eq!(tree_layer(&tree, "keep.txt", "shadowed by the upper layer"), "3");
    assert_eq!(tree_layer(&tree, "moved/", "renamed"), "upper,3");
    assert_eq!(tree_layer(&tree, "passwd", "whiteout"), "upper");
}

// ---------------------------------------------------------------------------------------------
// Pictures

/// Headless Chromium, if installed; under CI=true its absence fails the test.
fn chromium() -> Option<&'static str> {
    let found =
        ["chromium", "chromium-browser"].into_iter().find(|c| Command::new(c).arg("--version").output().is_ok());
    assert!(found.is_some() || !in_ci(), "chromium is not installed (apt-get install -y chromium), and CI=true");
    if found.is_none() {
        eprintln!("skipped: chromium is not installed");
    }
    found
}

/// Renders `file` with headless Chromium and returns the share of non-white pixels.
fn render(chromium: &str, file: &Path, scratch: &Path) -> f64 {
    let png = scratch.join(format!("{}.png", file.file_name().unwrap().to_string_lossy()));
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", scratch.join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,900")
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(png.is_file(), "chromium made no screenshot:\n{}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let channels = info.line_size / info.width as usize;
    let pixels = buf[..info.buffer_size()].chunks(channels);
    let total = pixels.len();
    let inked = pixels.filter(|p| p.iter().take(3).any(|&c| c < 230)).count();
    inked as f64 / total as f64
}

/// Every `<text>` of an SVG document, which must be well-formed XML.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid SVG: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(doc.root_element().tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::to_string).collect()
}

#[test]
fn pictures_are_valid_and_render_in_chromium() {
    let env = Env::new();
    let (svg, html) = (env.dir.path().join("multi.svg"), env.dir.path().join("multi.html"));
    let out = env.ok(&["layers", IMAGE, "--svg", svg.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert!(out.contains("Wrote"), "{out}");
    let text = fs::read_to_string(&svg).unwrap();
    assert!(!text.replace("http://www.w3.org/2000/svg", "").contains("http"), "no network reference");
    assert!(!text.contains("<script") && !text.contains("@import") && !text.contains("href"), "self-contained");
    let texts = svg_texts(&text);
    for name in ["remove-me.txt", "✗ remove-me.txt", "dir-to-file", "inner", "✗ link-abs", "✗ file", "old1", "new1"]
    {
        assert!(texts.iter().any(|t| t == name), "{name:?} not among the SVG's texts: {texts:?}");
    }
    assert!(texts.iter().any(|t| t == "merged view") && texts.iter().any(|t| t.starts_with("layer 5 · 04fec36bdd4a")));
    let page = fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg") && page.contains("<td>81B</td>"));
    let inner = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap() + 6];
    assert_eq!(svg_texts(inner), texts);

    let Some(chromium) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    for file in [&svg, &html] {
        let inked = render(chromium, file, scratch.path());
        assert!(inked > 0.03, "{} renders nearly blank ({:.1} % ink)", file.display(), inked * 100.0);
    }
}

#[test]
fn unknown_targets_fail_with_one_line() {
    let env = Env::new();
    for args in [&["layers", "nope"][..], &["tree", "nope"], &["explain", "nope", "/"]] {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.lines().count() == 1, "{args:?}: {stderr}");
        assert!(stderr.contains("No such image: nope"), "{stderr}");
    }
    let out = env.run(&["tree", IMAGE, "data/link-abs"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not seen in image oci-multi:latest"));
}
