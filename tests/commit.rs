//! Integration tests of `strata diff`, `commit` and `save`, on the busybox fixture image
//! (`fixtures/images/oci-multi`), each on its own `--root`.
//!
//! A container is made by `strata run` when that verb exists; otherwise by hand, as
//! `strata run` lays it out (`ROOT/containers/<id>/{container.json,upper,work}`), its files
//! changed by the same shell script run with `chroot` in a Strata mount of the image with the
//! container's upper dir. Tests named `root_…` mount and need root: without it they return
//! early, except under `CI=true`, where they fail. Tests using skopeo, umoci or podman fail
//! under `CI=true` when the tool is missing.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::{Dockerd, Podman};
use common::store::{Store, require_tool};
use common::{Fs, snapshot};

// ---------------------------------------------------------------------------------------------
// Helpers

const IMAGE: &str = "oci-multi";

/// The changes the busybox scenario makes inside the container.
const SCRIPT: &str = "set -e
echo appended >> /etc/passwd
rm /data/keep.txt
rm -rf /deep
rm -rf /newdir; mkdir /newdir; echo fresh > /newdir/file
chmod 600 /data/chmod-me.sh
chown 1000:1000 /data/empty-file
ln /etc/fx-release /etc/fx-release.hl
ln -s /etc/passwd /data/passwd-link
mknod /data/null c 1 3; mkfifo /data/pipe
mv /home/user /home/renamed
echo 10.0.0.9 extra >> /etc/hosts || true
";

/// A store with the fixture image, in a temp dir of its own.
struct Env(Store);

impl std::ops::Deref for Env {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        let env = Env(Store::new());
        env.load_fixture("oci-multi");
        env
    }

    /// The image's layer dirs, bottom first.
    fn layer_dirs(&self, image: &str) -> Vec<PathBuf> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", image])).unwrap();
        v[0]["Layers"].as_array().unwrap().iter().map(|l| PathBuf::from(l["Path"].as_str().unwrap())).collect()
    }

    fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", image])).unwrap();
        v[0].clone()
    }

    fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ok(&["images"]).lines().skip(1).map(|l| l.to_string()).collect();
        v.sort();
        v
    }
}

/// Whether this strata has `strata run`.
fn has_run() -> bool {
    Command::new(common::strata()).args(["run", "--help"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// A container record, laid out as `strata run` writes it; returns its dir.
fn record(env: &Env, name: &str, command: &[&str], state: serde_json::Value) -> PathBuf {
    let id = format!("{:0>64}", format!("{:x}", name.bytes().fold(7u64, |h, b| h.wrapping_mul(31) ^ b as u64)));
    let dir = env.root().join("containers").join(&id);
    for d in ["upper", "work", "merged"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let image_id = env.inspect(IMAGE)["Id"].as_str().unwrap().to_string();
    let rec = serde_json::json!({
        "id": id, "name": name, "image": IMAGE, "image_id": image_id,
        "created": "2024-01-01T00:00:00Z", "command": command, "state": state,
    });
    fs::write(dir.join("container.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
    dir
}

/// The directory of the container named `name`.
fn container_dir(env: &Env, name: &str) -> PathBuf {
    for e in fs::read_dir(env.root().join("containers")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(bytes) = fs::read(dir.join("container.json")) else { continue };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if v["name"] == name {
            return dir;
        }
    }
    panic!("no container named {name}");
}

/// Makes container `name` from the fixture image and runs `script` in it: with `strata run`
/// when there is one, else through a Strata mount of the image over the container's upper dir.
fn container(env: &Env, name: &str, script: &str) -> PathBuf {
    if has_run() {
        eprintln!("container made by strata run");
        env.ok(&["run", "--name", name, IMAGE, "/bin/sh", "-c", script]);
        return container_dir(env, name);
    }
    eprintln!("container made by hand: strata mount + chroot");
    let dir = record(env, name, &["/bin/sh", "-c", script], serde_json::json!({"status": "exited", "pid": null}));
    let mut lowers = env.layer_dirs(IMAGE);
    lowers.reverse();
    let m = common::mount(Fs::Strata, &lowers, Some(&dir.join("upper")), Some(&dir.join("work")), &dir.join("merged"));
    let st = Command::new("chroot").arg(&m.mnt).args(["/bin/sh", "-c", script]).status().unwrap();
    assert!(st.success(), "the script failed in the container");
    m.unmount();
    dir
}

/// The tar of the top layer of `image`, as (type, name, link, mode, owner, size) lines.
fn top_layer_listing(env: &Env, image: &str) -> Vec<String> {
    let v = env.inspect(image);
    let layer = v["Layers"].as_array().unwrap().last().unwrap().clone();
    let digest = layer["Digest"].as_str().unwrap().trim_start_matches("sha256:");
    let blob = fs::File::open(env.root().join("blobs/sha256").join(digest)).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Fifo => 'p',
            _ => '-',
        };
        let mut link = e.link_name().unwrap().map(|l| format!(" -> {}", l.display())).unwrap_or_default();
        if kind == 'c' {
            link = format!(" {},{}", h.device_major().unwrap().unwrap(), h.device_minor().unwrap().unwrap());
        }
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        out.push(format!(
            "{kind} {name}{link} {:o} {}:{} {}",
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.size().unwrap()
        ));
    }
    out
}

/// What a read-only Strata mount of `lowers` (top first) shows, without run-time mount targets
/// and Strata's virtual xattrs.
fn view(lowers: &[PathBuf], mnt: &Path) -> common::Snapshot {
    let m = common::mount(Fs::Strata, lowers, None, None, mnt);
    let mut s = snapshot(&m.mnt);
    m.unmount();
    for t in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        s.nodes.remove(t);
        s.inos.remove(t);
    }
    for n in s.nodes.values_mut() {
        n.xattrs.retain(|k, _| !k.starts_with("user.strata."));
    }
    s
}

/// Waits for `child` at most `limit`, then kills it.
fn wait(mut child: std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The busybox scenario

const EXPECTED_DIFF: &[&str] = &[
    "C /data",
    "C /data/chmod-me.sh",
    "C /data/empty-file",
    "D /data/keep.txt",
    "A /data/null",
    "A /data/passwd-link",
    "A /data/pipe",
    "D /deep",
    "C /etc",
    "C /etc/fx-release",
    "A /etc/fx-release.hl",
    "C /etc/passwd",
    "C /home",
    "A /home/renamed",
    "A /home/renamed/.config",
    "A /home/renamed/.config/app.conf",
    "A /home/renamed/owned.txt",
    "D /home/user",
    "C /newdir",
    "A /newdir/file",
];

#[test]
fn root_busybox_changes_commit_to_the_expected_layer() {
    if !common::require_root("root_busybox_changes_commit_to_the_expected_layer") {
        return;
    }
    let env = Env::new();
    container(&env, "c1", SCRIPT);
    let diff = env.ok(&["diff", "c1"]);
    assert_eq!(diff.lines().collect::<Vec<_>>(), EXPECTED_DIFF);
    let id = env.ok(&[
        "commit",
        "-a",
        "Ann <ann@example.org>",
        "-m",
        "busybox edits",
        "-c",
        "CMD [\"cat\", \"/newdir/file\"]",
        "c1",
        "edited:1",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "docker prints the full id: {id}");
    let names: Vec<String> = top_layer_listing(&env, "edited:1");
    let expected = [
        "- .wh.deep 600 0:0 0",
        "d data/ 755 0:0 0",
        "- data/.wh.keep.txt 600 0:0 0",
        "- data/chmod-me.sh 600 0:0 24",
        "- data/empty-file 644 1000:1000 0",
        "c data/null 1,3 644 0:0 0",
        "l data/passwd-link -> /etc/passwd 777 0:0 0",
        "p data/pipe 644 0:0 0",
        "d etc/ 755 0:0 0",
        "- etc/fx-release 644 0:0 24",
        "h etc/fx-release.hl -> etc/fx-release 644 0:0 0",
        "- etc/passwd 644 0:0 132",
        "d home/ 755 1000:1000 0",
        "- home/.wh.user 600 0:0 0",
        "d home/renamed/ 755 1000:1000 0",
        "d home/renamed/.config/ 755 1000:1000 0",
        "- home/renamed/.config/app.conf 644 1000:1000 4",
        "- home/renamed/owned.txt 640 1000:1000 14",
        "d newdir/ 755 0:0 0",
        "- newdir/.wh..wh..opq 600 0:0 0",
        "- newdir/file 644 0:0 6",
    ];
    assert_eq!(names, expected);
    let history = env.ok(&["history", "--no-trunc", "edited:1"]);
    assert!(history.lines().nth(1).unwrap().starts_with(id), "{history}");
    assert!(history.lines().next().unwrap().split_whitespace().last() == Some("AUTHOR"), "{history}");
    let step = history.lines().find(|l| l.contains("busybox edits")).unwrap_or_default();
    assert!(step.trim_end().ends_with("Ann <ann@example.org>"), "{history}");
    let v = env.inspect("edited:1");
    assert_eq!(v["Author"], "Ann <ann@example.org>");
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["cat", "/newdir/file"]));
    assert_eq!(v["Config"]["WorkingDir"], "/data", "the image's config is kept");
    let step = v["History"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(step["author"], "Ann <ann@example.org>");
    assert_eq!(step["comment"], "busybox edits");
    assert_eq!(step["created_by"], format!("/bin/sh -c {SCRIPT}"), "the container's command");
    assert!(env.images().iter().any(|l| l.starts_with("edited ") && l.contains(&id[7..19])));
}

#[test]
fn root_the_new_image_shows_what_the_container_showed() {
    if !common::require_root("root_the_new_image_shows_what_the_container_showed") {
        return;
    }
    let env = Env::new();
    let dir = container(&env, "c1", SCRIPT);
    env.ok(&["commit", "c1", "edited:1"]);
    let mut image = env.layer_dirs(IMAGE);
    image.reverse();
    let mut container_stack = vec![dir.join("upper")];
    container_stack.extend(image);
    let mut new_image = env.layer_dirs("edited:1");
    new_image.reverse();
    let before = view(&container_stack, &env.path("mnt-container"));
    let after = view(&new_image, &env.path("mnt-image"));
    assert_eq!(before.diff(&after, true), Vec::<String>::new());
    assert!(after.nodes.contains_key("home/renamed/.config/app.conf"));
    // And the image tool's own mount of it, as `strata run` would start it.
    let mnt = env.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    if has_run() {
        let out = env.ok(&["run", "--rm", "edited:1", "cat", "/newdir/file", "/etc/passwd"]);
        assert!(out.starts_with("fresh\n") && out.ends_with("appended\n"), "{out}");
        return;
    }
    env.ok(&["image", "mount", "edited:1", mnt.to_str().unwrap()]);
    let out = Command::new("chroot").arg(&mnt).args(["cat", "/newdir/file"]).output().unwrap();
    env.ok(&["image", "umount", mnt.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fresh\n");
}

// ---------------------------------------------------------------------------------------------
// Containers made by hand (no mount needed)

/// A container whose upper dir is filled by `fill`.
fn hand_made(env: &Env, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
    let dir = record(env, name, &["/bin/sh"], serde_json::json!({"status": "exited", "pid": null}));
    fill(&dir.join("upper"));
    dir
}

#[test]
fn an_empty_upper_commits_an_empty_layer() {
    let env = Env::new();
    hand_made(&env, "idle", |_| {});
    assert_eq!(env.ok(&["diff", "idle"]), "");
    env.ok(&["commit", "-c", "ENV MODE=idle", "idle", "idle:1"]);
    let (old, new) = (env.inspect(IMAGE), env.inspect("idle:1"));
    let diff_ids = new["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(diff_ids.len(), old["RootFS"]["Layers"].as_array().unwrap().len() + 1);
    let empty_tar = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    assert_eq!(diff_ids.last().unwrap(), empty_tar, "a tar of 1024 zero bytes, as docker commits");
    assert!(new["Config"]["Env"].as_array().unwrap().contains(&serde_json::json!("MODE=idle")));
    assert_eq!(top_layer_listing(&env, "idle:1"), Vec::<String>::new());
}

#[test]
fn the_same_changes_give_the_same_layer() {
    let env = Env::new();
    let fill = |up: &Path| {
        fs::create_dir_all(up.join("srv/app")).unwrap();
        fs::write(up.join("srv/app/a"), "a").unwrap();
        fs::write(up.join("srv/b"), "b").unwrap();
        for p in ["srv/app/a", "srv/b", "srv/app", "srv"] {
            let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            fs::File::open(up.join(p)).unwrap().set_modified(t).unwrap();
        }
    };
    hand_made(&env, "one", fill);
    hand_made(&env, "two", fill);
    for c in ["one", "two"] {
        env.ok(&["commit", c, &format!("{c}:1")]);
    }
    let layer = |img: &str| env.inspect(img)["Layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(layer("one:1")["Digest"], layer("two:1")["Digest"]);
    assert_eq!(layer("one:1")["DiffID"], layer("two:1")["DiffID"]);
    assert_eq!(env.ok(&["diff", "one"]), "A /srv\nA /srv/app\nA /srv/app/a\nA /srv/b\n");
}

#[test]
fn compression_choices_and_bad_arguments() {
    let env = Env::new();
    hand_made(&env, "c", |up| fs::write(up.join("new"), "n").unwrap());
    for (c, media) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        env.ok(&["commit", "--compression", c, "c", &format!("c:{c}")]);
        let v = env.inspect(&format!("c:{c}"));
        assert_eq!(v["Layers"].as_array().unwrap().last().unwrap()["MediaType"], media);
    }
    let before = env.images();
    assert!(env.fails(&["commit", "nope", "x:1"]).contains("No such container: nope"));
    assert!(env.fails(&["diff", "nope"]).contains("No such container: nope"));
    assert!(env.fails(&["commit", "-c", "RUN rm -rf /", "c", "x:1"]).contains("unknown instruction"));
    assert!(env.fails(&["commit", "c", "Bad:Name"]).contains("invalid image name"));
    assert_eq!(env.images(), before, "failed commits leave the store as it was");
}

#[test]
fn commit_and_save_show_progress_on_a_terminal_only() {
    if !require_tool("script") {
        return;
    }
    let env = Env::new();
    hand_made(&env, "c", |up| random_file(&up.join("big.bin"), 2));
    let shown = env.on_tty(&["commit", "c", "big:1"]);
    assert!(shown.contains("\x1b[2Kc: Committing "), "a live line: {shown:?}");
    assert!(shown.contains("c: Committed layer "), "{shown:?}");
    let id = env.inspect("big:1")["Id"].as_str().unwrap().to_string();
    assert!(shown.trim_end().ends_with(&id), "the id comes last: {shown:?}");
    let out = env.path("big.tar");
    let shown = env.on_tty(&["save", "-o", out.to_str().unwrap(), "big:1"]);
    assert!(shown.contains(": Copying ") && shown.contains(": Copied"), "{shown:?}");
    // Not a terminal: the id only, and nothing from save.
    let out = env.run(&["commit", "c", "big:2"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).trim().starts_with("sha256:"));
    let save = env.run(&["save", "-o", env.path("b2.tar").to_str().unwrap(), "big:2"]);
    assert_eq!((save.stdout.len(), save.stderr.len()), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Crash safety and pausing

/// Fills `path` with `mib` MiB of incompressible bytes.
fn random_file(path: &Path, mib: usize) {
    let mut f = fs::File::create(path).unwrap();
    let mut urandom = fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut (&mut urandom).take((mib << 20) as u64), &mut f).unwrap();
}

/// A process alone in a new PID namespace, as a container's PID 1; killed when dropped.
struct Sleeper {
    unshare: std::process::Child,
    /// Its host pid.
    pid: i32,
}

impl Sleeper {
    fn start() -> Sleeper {
        let mut unshare =
            Command::new("unshare").args(["--pid", "--fork", "--kill-child", "sleep", "300"]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            let kids = fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap_or_default();
            if let Some(pid) = kids.split_whitespace().next() {
                break pid.parse().unwrap();
            }
            if Instant::now() > deadline {
                let _ = unshare.kill();
                let _ = unshare.wait();
                panic!("unshare did not start its child");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Sleeper { unshare, pid }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid.to_string()]).status();
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn state_of(pid: i32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.trim_start().chars().next().unwrap()
}

#[test]
fn root_sigkill_mid_commit_leaves_the_store_as_before() {
    if !common::require_root("root_sigkill_mid_commit_leaves_the_store_as_before") {
        return;
    }
    let env = Env::new();
    let sleeper = Sleeper::start();
    let pid = sleeper.pid;
    let dir = record(&env, "big", &["/bin/sh"], serde_json::json!({"status": "running", "pid": pid}));
    random_file(&dir.join("upper/big.bin"), 200);
    let before = env.images();
    let index_before = fs::read(env.root().join("index.json")).unwrap();
    let listing = |dir: &str| {
        let mut v: Vec<String> = fs::read_dir(env.root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (blobs_before, layers_before) = (listing("blobs/sha256"), listing("layers"));
    let child = env.cmd(&["commit", "big", "big:1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it once its blob is being written.
    let tmp = env.root().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_dir(&tmp).unwrap().flatten().any(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)) {
        assert!(Instant::now() < deadline, "commit wrote nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(state_of(pid), 'T', "the container is paused while its upper dir is read");
    kill9(child.id());
    let st = wait(child, Duration::from_secs(10));
    assert!(!st.success());
    // The watchdog thaws the container when commit dies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_of(pid) == 'T' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(state_of(pid), 'T', "the container was left frozen");
    assert_eq!(env.images(), before);
    assert_eq!(fs::read(env.root().join("index.json")).unwrap(), index_before);
    // Every blob in place is whole (named by its content).
    for e in fs::read_dir(env.root().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let out = Command::new("sha256sum").arg(&p).output().unwrap();
        let sum = String::from_utf8_lossy(&out.stdout);
        assert!(sum.starts_with(p.file_name().unwrap().to_str().unwrap()), "{} is not whole", p.display());
    }
    // `prune` removes what the killed commit left.
    env.ok(&["prune"]);
    assert_eq!(listing("tmp"), Vec::<String>::new());
    assert_eq!((listing("blobs/sha256"), listing("layers")), (blobs_before, layers_before));
    env.ok(&["commit", "--compression", "none", "big", "big:1"]);
    assert_eq!(env.images().len(), before.len() + 1);
    assert_ne!(state_of(pid), 'T');
    env.ok(&["rmi", "big:1"]);
    env.ok(&["prune"]);
    assert_eq!(fs::read_dir(env.root().join("tmp")).unwrap().count(), 0);
}

fn kill9(pid: u32) {
    let st = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(st.success());
}

#[test]
fn root_a_running_container_is_thawed_after_commit() {
    if !common::require_root("root_a_running_container_is_thawed_after_commit") {
        return;
    }
    let env = Env::new();
    let sleeper = Sleeper::start();
    let pid = sleeper.pid;
    record(&env, "live", &["/bin/sh"], serde_json::json!({"status": "running", "pid": pid}));
    env.ok(&["commit", "live", "live:1"]);
    assert_ne!(state_of(pid), 'T');
    env.ok(&["commit", "--pause=false", "live", "live:2"]);
}

#[test]
fn root_rootless_commit_keeps_the_image_owners_and_maps_the_containers() {
    if !common::require_root("root_rootless_commit_keeps_the_image_owners_and_maps_the_containers") {
        return;
    }
    // A plain user's store: layer 2's 1000:1000 owners can only be recorded, and what the
    // container writes lands on disk as the user (uid 65534), root inside.
    let env = Env(Store::as_user(65534));
    env.load_fixture(IMAGE);
    let script = "echo x >> /home/user/owned.txt; echo new > /data/new; chmod 700 /home/user/.config";
    env.ok(&["run", "--name", "c1", IMAGE, "sh", "-c", script]);
    let diff = env.ok(&["diff", "c1"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        ["C /data", "A /data/new", "C /home/user/.config", "C /home/user/owned.txt"],
        "the copied-up parents keep the image's owner: /home and /home/user are not changed"
    );
    env.ok(&["commit", "c1", "rl:1"]);
    assert_eq!(
        top_layer_listing(&env, "rl:1"),
        [
            "d data/ 755 0:0 0",
            "- data/new 644 0:0 4",
            "d home/ 755 1000:1000 0",
            "d home/user/ 755 1000:1000 0",
            "d home/user/.config/ 700 1000:1000 0",
            "- home/user/owned.txt 640 1000:1000 16",
        ]
    );
    // The new layer, unpacked by the user, records the owners again.
    let top = env.layer_dirs("rl:1").pop().unwrap();
    let dir = fs::File::open(top.join("home/user")).unwrap();
    let owner = strata::sys::xattr::get(
        std::os::fd::AsFd::as_fd(&dir),
        Some(std::ffi::OsStr::new("owned.txt")),
        std::ffi::OsStr::new("user.strata.owner"),
    )
    .unwrap();
    assert_eq!(owner.as_deref(), Some(&b"1000:1000"[..]));
}

// ---------------------------------------------------------------------------------------------
// Saving, and what other tools make of it

/// Commits the busybox scenario as `edited:1`.
fn edited(env: &Env) {
    container(env, "c1", SCRIPT);
    env.ok(&["commit", "-a", "Ann", "-m", "edits", "c1", "edited:1"]);
}

#[test]
fn root_save_and_load_round_trip_in_every_format() {
    if !common::require_root("root_save_and_load_round_trip_in_every_format") {
        return;
    }
    let env = Env::new();
    edited(&env);
    let id = env.inspect("edited:1")["Id"].clone();
    for (format, out) in [("docker-archive", "d.tar"), ("oci-archive", "o.tar"), ("oci-dir", "o-dir")] {
        let path = env.path(out);
        env.ok(&["save", "--format", format, "-o", path.to_str().unwrap(), "edited:1", IMAGE]);
        let other = Env(Store::new());
        let loaded = other.ok(&["load", "-q", "-i", path.to_str().unwrap()]);
        assert!(loaded.contains("edited:1") && loaded.contains(IMAGE), "{format}: {loaded}");
        assert_eq!(other.inspect("edited:1")["Id"], id, "{format}: the config is saved byte for byte");
        assert_eq!(other.inspect("edited:1")["RootFS"], env.inspect("edited:1")["RootFS"]);
    }
    let dir = env.path("o-dir");
    assert!(env.fails(&["save", "--format", "oci-dir", "-o", dir.to_str().unwrap(), "edited:1"]).contains("exists"));
}

#[test]
fn root_skopeo_and_umoci_read_the_saved_image() {
    if !common::require_root("root_skopeo_and_umoci_read_the_saved_image") || !require_tool("skopeo") {
        return;
    }
    if !require_tool("umoci") {
        return;
    }
    let env = Env::new();
    edited(&env);
    let (d, o, dir) = (env.path("d.tar"), env.path("o.tar"), env.path("layout"));
    env.ok(&["save", "-o", d.to_str().unwrap(), "edited:1"]);
    env.ok(&["save", "--format", "oci-archive", "-o", o.to_str().unwrap(), "edited:1"]);
    env.ok(&["save", "--format", "oci-dir", "-o", dir.to_str().unwrap(), "edited:1"]);
    let id = env.inspect("edited:1")["Id"].as_str().unwrap().to_string();
    for r in [format!("docker-archive:{}", d.display()), format!("oci-archive:{}", o.display())] {
        let out = Command::new("skopeo").args(["inspect", "--config", &r]).output().unwrap();
        assert!(out.status.success(), "skopeo inspect {r}: {}", String::from_utf8_lossy(&out.stderr));
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["author"], "Ann", "{r}");
    }
    let r = format!("oci:{}:edited:1", dir.display());
    let out = Command::new("skopeo").args(["inspect", "--raw", "--config", &r]).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {r}: {}", String::from_utf8_lossy(&out.stderr));
    let digest = format!("sha256:{}", hex::encode(sha2_of(&out.stdout)));
    assert_eq!(digest, id, "skopeo reads the config byte for byte");
    let bundle = env.path("bundle");
    let image_arg = format!("{}:edited:1", dir.display());
    let out = Command::new("umoci").args(["unpack", "--image", &image_arg]).arg(&bundle).output().unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    let rootfs = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("newdir/file")).unwrap(), "fresh\n");
    assert!(fs::read_to_string(rootfs.join("etc/passwd")).unwrap().ends_with("appended\n"));
    assert!(
        !rootfs.join("deep").exists() && !rootfs.join("home/user").exists() && !rootfs.join("data/keep.txt").exists()
    );
    assert!(rootfs.join("home/renamed/.config/app.conf").exists());
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(fs::symlink_metadata(rootfs.join("data/pipe")).unwrap().file_type().is_fifo());
    let null = fs::symlink_metadata(rootfs.join("data/null")).unwrap();
    assert!(null.file_type().is_char_device() && null.rdev() == rustix::fs::makedev(1, 3));
}

fn sha2_of(bytes: &[u8]) -> sha2::digest::Output<sha2::Sha256> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
}

#[test]
fn root_podman_loads_and_runs_the_committed_image() {
    if !common::require_root("root_podman_loads_and_runs_the_committed_image") || !require_tool("podman") {
        return;
    }
    let env = Env::new();
    edited(&env);
    let podman = Podman::new();
    for (format, file) in [("docker-archive", "d.tar"), ("oci-archive", "o.tar")] {
        let path = env.path(file);
        env.ok(&["save", "--format", format, "-o", path.to_str().unwrap(), "edited:1"]);
        let out = podman.run(&["load", "-i", path.to_str().unwrap()]);
        assert!(out.status.success(), "podman load ({format}): {}", String::from_utf8_lossy(&out.stderr));
        let loaded = String::from_utf8_lossy(&out.stdout).into_owned();
        let name = loaded.lines().find_map(|l| l.strip_prefix("Loaded image: ")).unwrap().trim().to_string();
        let out = podman.run(&["run", "--rm", "--network", "none", "--runtime", "runc", &name, "cat", "/newdir/file"]);
        assert!(out.status.success(), "podman run ({format}): {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "fresh\n");
    }
    let out = podman.run(&["image", "inspect", "--format", "{{.Author}}", "localhost/edited:1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Ann");
}

#[test]
fn root_docker_loads_and_runs_the_saved_image() {
    if !common::require_root("root_docker_loads_and_runs_the_saved_image") {
        return;
    }
    let Some(docker) = Dockerd::start() else { return };
    let env = Env::new();
    edited(&env);
    let path = env.path("d.tar");
    env.ok(&["save", "-o", path.to_str().unwrap(), "edited:1"]);
    let out = docker.run(&["load", "-i", path.to_str().unwrap()]);
    assert!(out.status.success(), "docker load: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Loaded image: edited:1"));
    let out = docker.run(&["run", "--rm", "--network", "none", "edited:1", "cat", "/newdir/file"]);
    assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fresh\n");
}
