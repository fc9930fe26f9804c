//! The mount as a user meets it: command-line forms, setup errors, rootless and root mounts,
//! layers on several filesystems, signals, concurrency.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("strata-cli-").tempdir_in("/tmp").unwrap()
}

fn dirs(t: &Path, names: &[&str]) {
    for n in names {
        std::fs::create_dir_all(t.join(n)).unwrap();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// The per-mount options of the mount on `p` (mountinfo's sixth field), e.g. `rw,nosuid,nodev`.
fn mount_flags(p: &Path) -> String {
    let p = p.canonicalize().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == p.to_str()).unwrap_or_default().to_string();
    line.split(' ').nth(5).unwrap_or_default().to_string()
}

fn is_mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == p.to_str())
}

/// Runs a strata mount that must fail; returns its single stderr line.
fn mount_error(args: &[&str]) -> String {
    let out = Command::new(strata()).args(args).output().unwrap();
    assert!(!out.status.success(), "strata {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line, got: {err}");
    err
}

#[test]
fn root_bad_setup_gets_one_clear_line_and_a_failure_status() {
    if !require_root("root_bad_setup_gets_one_clear_line_and_a_failure_status") {
        return;
    }
    let t = tmp();
    let p = |s: &str| t.path().join(s).to_string_lossy().into_owned();
    dirs(t.path(), &["l", "u", "w", "m", "u/inner", "tmpfs"]);
    std::fs::write(t.path().join("notdir"), "").unwrap();
    let opts = |l: &str, u: &str, w: &str| format!("lowerdir={},upperdir={},workdir={}", p(l), p(u), p(w));
    let e = mount_error(&["mount", "-o", &opts("missing", "u", "w"), &p("m")]);
    assert!(e.contains("missing") && e.contains("no such directory"), "{e}");
    let e = mount_error(&["mount", "-o", &opts("notdir", "u", "w"), &p("m")]);
    assert!(e.contains("notdir") && e.contains("not a directory"), "{e}");
    let e = mount_error(&["mount", "-o", &opts("l", "u", "u/inner"), &p("m")]);
    assert!(e.contains("must not be inside one another"), "{e}");
    let e = mount_error(&["mount", "-o", &opts("u/inner", "u", "w"), &p("m")]);
    assert!(e.contains("u/inner is the upper dir") && e.contains("must not overlap"), "{e}");
    let e = mount_error(&["mount", "-o", &opts("w", "u", "w"), &p("m")]);
    assert!(e.contains("is the work dir") && e.contains("must not overlap"), "{e}");
    let e = mount_error(&["mount", "-o", &format!("lowerdir={}", p("l")), &p("nomnt")]);
    assert!(e.contains("nomnt: no such directory"), "{e}");
    assert!(Command::new("mount").args(["-t", "tmpfs", "tmpfs", &p("tmpfs")]).status().unwrap().success());
    let e = mount_error(&["mount", "-o", &opts("l", "u", "tmpfs"), &p("m")]);
    Command::new("umount").arg(p("tmpfs")).status().unwrap();
    assert!(e.contains("another filesystem"), "{e}");
    // An upper dir the caller may not use.
    let locked = t.path().join("locked");
    std::fs::create_dir_all(locked.join("u")).unwrap();
    std::fs::create_dir_all(locked.join("w")).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = t.path().join("strata");
    std::fs::copy(strata(), &bin).unwrap();
    let args = format!("lowerdir={},upperdir={}/u,workdir={}/w", p("l"), locked.display(), locked.display());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["mount", "-o", &args, &p("m")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("permission denied") && err.contains("locked/u"), "{err}");
    let e = mount_error(&["mount", "-o", &format!("lowerdir={},bogus", p("l")), &p("m")]);
    assert!(e.contains("unknown mount option bogus"), "{e}");
    let e = mount_error(&["mount", "-o", &format!("lowerdir={},uidmapping=0:1:1", p("l")), &p("m")]);
    assert!(e.contains("uidmapping") && e.contains("not supported"), "{e}");
    let busy = mount(Fs::Strata, &[t.path().join("l")], None, None, &t.path().join("m"));
    let e = mount_error(&["mount", "-o", &format!("lowerdir={}", p("l")), &p("m")]);
    assert!(e.contains("busy"), "{e}");
    busy.unmount();
    // No /dev/fuse: an empty /dev in a private mount namespace.
    let script = format!("mount -t tmpfs none /dev && exec {} mount -o lowerdir={} {}", strata(), p("l"), p("m"));
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/fuse not found"), "{out:?}");
}

/// `-o io_uring=on` where the kernel does not offer it: one line naming the fix, and no mount.
/// `scripts/test` turns `enable_uring` off for this pass.
#[test]
fn root_io_uring_on_without_the_kernel_offering_it_fails_with_one_line() {
    if !require_root("root_io_uring_on_without_the_kernel_offering_it_fails_with_one_line") {
        return;
    }
    if common::uring::uring_enabled() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "enable_uring is on: scripts/test turns it off here");
        eprintln!("skipped: enable_uring is on");
        return;
    }
    let t = tmp();
    dirs(t.path(), &["l", "m"]);
    let opts = format!("lowerdir={},io_uring=on", t.path().join("l").display());
    let m = t.path().join("m").display().to_string();
    let e = mount_error(&["mount", "-o", &opts, &m]);
    assert!(e.starts_with("strata: io_uring transport requested but the kernel does not offer it ("), "{e}");
    assert!(e.contains("echo Y > /sys/module/fuse/parameters/enable_uring") || e.contains("Linux 6.14+"), "{e}");
    assert!(!is_mounted(&t.path().join("m")));
    // io_uring=off (and the default) mount as before.
    let opts = format!("lowerdir={},io_uring=off", t.path().join("l").display());
    assert!(run(Command::new(strata()).args(["mount", "-o", &opts, &m])).status.success());
    assert!(is_mounted(&t.path().join("m")));
    assert!(run(Command::new(strata()).arg("umount").arg(&m)).status.success());
}

#[test]
fn root_read_only_mount_answers_erofs() {
    if !require_root("root_read_only_mount_answers_erofs") {
        return;
    }
    let t = tmp();
    build_layer(&t.path().join("l"), &[file("f", "x")]);
    let m = mount(Fs::Strata, &[t.path().join("l")], None, None, &t.path().join("m"));
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
    let e = std::fs::write(m.path("f"), "y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::create_dir(m.path("d")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn root_fuse_overlayfs_command_line_and_mount_helper_forms() {
    if !require_root("root_fuse_overlayfs_command_line_and_mount_helper_forms") {
        return;
    }
    let t = tmp();
    dirs(t.path(), &["u", "w", "m", "u2", "w2"]);
    build_layer(&t.path().join("l"), &[file("f", "lower")]);
    let opts = |u: &str, w: &str| {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            t.path().join("l").display(),
            t.path().join(u).display(),
            t.path().join(w).display()
        )
    };
    // podman's mount_program form: no verb, -o first.
    let out = run(Command::new(strata()).args(["-o", &opts("u", "w")]).arg(t.path().join("m")));
    assert!(out.status.success());
    assert_eq!(std::fs::read(t.path().join("m/f")).unwrap(), b"lower");
    let flags = mount_flags(&t.path().join("m"));
    assert!(flags.contains("nosuid") && flags.contains("nodev"), "FUSE's defaults unless asked: {flags}");
    run(Command::new(strata()).arg("umount").arg(t.path().join("m")));
    assert!(!is_mounted(&t.path().join("m")));
    // mount -t fuse.strata without a helper of its own: mount(8) runs fuse3's mount.fuse, which
    // runs `strata none MNT -o OPTS` found on the (standard) PATH. Run here with a PATH that
    // has this build, as mount(8) would run it.
    let helper = Path::new("/sbin/mount.fuse.strata");
    {
        let bin = t.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(strata(), bin.join("strata")).unwrap();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
        let mut cmd = Command::new("/sbin/mount.fuse");
        cmd.env("PATH", path).args(["none"]).arg(t.path().join("m"));
        cmd.args(["-o", &format!("rw,{},dev,suid", opts("u", "w")), "-t", "fuse.strata"]);
        assert!(run(&mut cmd).status.success(), "mount -t fuse.strata through mount.fuse failed");
        assert_eq!(std::fs::read(t.path().join("m/f")).unwrap(), b"lower");
        let flags = mount_flags(&t.path().join("m"));
        assert!(!flags.contains("nosuid") && !flags.contains("nodev"), "suid,dev asked: {flags}");
        run(Command::new(strata()).arg("umount").arg(t.path().join("m")));
        assert!(!is_mounted(&t.path().join("m")));
    }
    // mount -t fuse.strata, through /sbin/mount.fuse.strata.
    let installed = !helper.exists();
    if installed {
        std::os::unix::fs::symlink(strata(), helper).unwrap();
    }
    let out =
        run(Command::new("mount").args(["-t", "fuse.strata", "-o", &opts("u2", "w2"), "none"]).arg(t.path().join("m")));
    let mounted = is_mounted(&t.path().join("m"));
    let content = std::fs::read(t.path().join("m/f"));
    let _ = Command::new("umount").arg(t.path().join("m")).status();
    if installed {
        std::fs::remove_file(helper).unwrap();
    }
    assert!(out.status.success() && mounted, "mount -t fuse.strata failed");
    assert_eq!(content.unwrap(), b"lower");
}

#[test]
fn root_sigterm_unmounts_cleanly() {
    if !require_root("root_sigterm_unmounts_cleanly") {
        return;
    }
    let t = tmp();
    dirs(t.path(), &["l", "m"]);
    let mut child = Command::new(strata())
        .args(["mount", "-f", "--lower"])
        .arg(t.path().join("l"))
        .arg(t.path().join("m"))
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if is_mounted(&t.path().join("m")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(is_mounted(&t.path().join("m")));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&t.path().join("m")));
}

/// Waits until `mnt` is mounted (or not, with `mounted: false`); false on timeout.
fn wait_mounted(mnt: &Path, mounted: bool) -> bool {
    for _ in 0..200 {
        if is_mounted(mnt) == mounted {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// The pid of the Strata daemon serving `mnt`.
fn daemon_of(mnt: &Path) -> Option<i32> {
    let want = mnt.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        (args.first()?.ends_with(b"strata") && args.contains(&want)).then_some(pid)
    })
}

#[test]
fn root_a_daemon_unmounted_from_outside_leaves_a_newer_mount_at_the_same_place_alone() {
    if !require_root("root_a_daemon_unmounted_from_outside_leaves_a_newer_mount_at_the_same_place_alone") {
        return;
    }
    let t = tmp();
    dirs(t.path(), &["a", "b", "m"]);
    std::fs::write(t.path().join("b/marker"), "b").unwrap();
    let m = t.path().join("m");
    let mut first =
        Command::new(strata()).args(["mount", "-f", "--lower"]).arg(t.path().join("a")).arg(&m).spawn().unwrap();
    assert!(wait_mounted(&m, true), "the first mount did not appear");
    let pid = rustix::process::Pid::from_raw(first.id() as i32).unwrap();
    // Whatever happens, the stopped daemon is let go (a stopped daemon would hang the test).
    struct Release(rustix::process::Pid);
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = rustix::process::kill_process(self.0, rustix::process::Signal::CONT);
        }
    }
    let _release = Release(pid);
    // Hold the first daemon still while its mount goes away and a second one takes the place.
    // umount(2) itself: the umount command stats the mount point, which the stopped daemon
    // would never answer.
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    rustix::mount::unmount(&m, rustix::mount::UnmountFlags::empty()).unwrap();
    let out = run(Command::new(strata()).args(["mount", "--lower"]).arg(t.path().join("b")).arg(&m));
    assert!(out.status.success() && is_mounted(&m));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert!(first.wait().unwrap().success(), "the first daemon should end cleanly");
    let _guard = Unmounter(vec![m.clone()]);
    assert!(is_mounted(&m), "the first daemon unmounted the second mount on its way out");
    assert_eq!(std::fs::read_to_string(m.join("marker")).unwrap(), "b");
    assert!(run(Command::new(strata()).arg("umount").arg(&m)).status.success());
}

#[test]
fn root_debug_mode_logs_in_the_foreground_and_a_background_daemon_unmounts_on_sigterm() {
    if !require_root("root_debug_mode_logs_in_the_foreground_and_a_background_daemon_unmounts_on_sigterm") {
        return;
    }
    let t = tmp();
    dirs(t.path(), &["l", "m"]);
    let m = t.path().join("m");
    // -o debug (fuse-overlayfs' spelling of -d): foreground, debug lines on stderr.
    let log = t.path().join("debug.log");
    let mut child = Command::new(strata())
        .args(["mount", "-o"])
        .arg(format!("debug,lowerdir={}", t.path().join("l").display()))
        .arg(&m)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_mounted(&m, true), "the foreground mount did not appear");
    std::fs::read_dir(&m).unwrap().count();
    let out = run(Command::new(strata()).arg("umount").arg(&m));
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("strata[debug]:"), "no debug lines in:\n{text}");
    let transport = if common::uring::uring_enabled() { "transport: io_uring (" } else { "transport: /dev/fuse" };
    assert!(text.contains(transport), "no {transport:?} in:\n{text}");
    // Background (the default): the command returns once mounted; SIGTERM to the daemon unmounts.
    let out = run(Command::new(strata()).args(["mount", "--lower"]).arg(t.path().join("l")).arg(&m));
    assert!(out.status.success() && is_mounted(&m), "background mount not ready when the command returned");
    let pid = daemon_of(&m).expect("no daemon serving the mount");
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(wait_mounted(&m, false), "SIGTERM did not unmount");
    for _ in 0..100 {
        if rustix::process::test_kill_process(pid).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the daemon did not exit after SIGTERM");
}

#[test]
fn root_rootless_mount_falls_back_to_wh_files_where_the_upper_refuses_whiteout_devices() {
    if !require_root("root_rootless_mount_falls_back_to_wh_files_where_the_upper_refuses_whiteout_devices") {
        return;
    }
    let t = tmp();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    build_layer(&t.path().join("l"), &[file("d/f", "lower"), file("d/gone", "x"), file("keep/old", "o")]);
    dirs(t.path(), &["il", "iu", "iw", "x", "m"]);
    let bin = t.path().join("strata");
    std::fs::copy(strata(), &bin).unwrap();
    let chown = Command::new("chown").args(["-R", "65534:65534", "."]).current_dir(t.path()).status();
    assert!(chown.unwrap().success());
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    // The upper dir lives in a kernel overlay mounted in the namespace: overlayfs refuses to make
    // whiteout devices in its view (EPERM), and passes user.* xattrs through.
    let script = "set -e; mount -t overlay overlay -o lowerdir=il,upperdir=iu,workdir=iw x; mkdir x/u x/w; \
         ./strata mount -o lowerdir=l,upperdir=x/u,workdir=x/w m; \
         rm m/d/gone; rm -r m/keep; mkdir m/keep; touch m/keep/new; umount m; \
         ls -A x/u/d x/u/keep; ./strata mount -o lowerdir=l,upperdir=x/u,workdir=x/w m; \
         ls -A m m/d m/keep; umount m";
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--mount"])
        .args(["sh", "-c", script])
        .current_dir(t.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rootless run failed: {stderr}");
    assert!(stderr.contains("refuses whiteout devices: deletions are written as .wh. files"), "{stderr}");
    let want = "x/u/d:\n.wh.gone\n\nx/u/keep:\n.wh..wh..opq\nnew\n\
                m:\nd\nkeep\n\nm/d:\nf\n\nm/keep:\nnew\n";
    assert_eq!(stdout, want);
}

#[test]
fn root_layers_on_different_filesystems_keep_unique_stable_inode_numbers() {
    if !require_root("root_layers_on_different_filesystems_keep_unique_stable_inode_numbers") {
        return;
    }
    let t = tmp();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    dirs(t.path(), &["a", "b", "u", "w", "m"]);
    // Two tmpfs instances number their inodes alike: the same numbers appear in both layers.
    for d in [&a, &b] {
        assert!(Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(d).status().unwrap().success());
    }
    let _guard = Unmounter(vec![a.clone(), b.clone()]);
    let entries: Vec<Entry> = (0..50).map(|i| file(&format!("d/f{i}"), "x")).collect();
    build_layer(&a, &entries);
    let entries: Vec<Entry> = (0..50).map(|i| file(&format!("d/g{i}"), "y")).collect();
    build_layer(&b, &entries);
    let lowers = [a.clone(), b.clone()];
    let (u, w, mp) = (t.path().join("u"), t.path().join("w"), t.path().join("m"));
    let m = mount(Fs::Strata, &lowers, Some(&u), Some(&w), &mp);
    let before = snapshot(&m.mnt).inos;
    let mut seen = std::collections::HashMap::new();
    for (path, ino) in &before {
        if let Some(other) = seen.insert(*ino, path.clone()) {
            panic!("{path} and {other} share st_ino {ino}");
        }
    }
    std::fs::write(m.path("d/f3"), "copied up").unwrap();
    std::fs::write(m.path("d/g7"), "copied up").unwrap();
    let after = snapshot(&m.mnt).inos;
    assert_eq!(before, after, "copy-up changed an inode number");
    m.unmount();
    let m = mount(Fs::Strata, &lowers, Some(&u), Some(&w), &mp);
    assert_eq!(before, snapshot(&m.mnt).inos, "a remount changed an inode number");
}

struct Unmounter(Vec<PathBuf>);

impl Drop for Unmounter {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

#[test]
fn root_concurrent_writers_copy_a_file_up_once() {
    if !require_root("root_concurrent_writers_copy_a_file_up_once") {
        return;
    }
    let t = tmp();
    build_layer(&t.path().join("l"), &[file("d/log", "start\n")]);
    let m = mount(
        Fs::Strata,
        &[t.path().join("l")],
        Some(&t.path().join("u")),
        Some(&t.path().join("w")),
        &t.path().join("m"),
    );
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let p = m.path("d/log");
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(format!("line {i}\n").as_bytes()).unwrap();
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let text = std::fs::read_to_string(m.path("d/log")).unwrap();
    assert!(text.starts_with("start\n"), "{text}");
    assert_eq!(text.lines().count(), 9, "{text}");
    assert_eq!(std::fs::read_to_string(t.path().join("l/d/log")).unwrap(), "start\n");
    // No temp copy is left: only the shared whiteout new whiteouts are linked to.
    let left: Vec<_> = std::fs::read_dir(t.path().join("w/work")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| n == strata::fs::whiteout::SHARED_WHITEOUT), "{left:?}");
}

#[test]
fn root_mount_lets_other_users_in_with_kernel_permission_checks() {
    if !require_root("root_mount_lets_other_users_in_with_kernel_permission_checks") {
        return;
    }
    let t = tmp();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    build_layer(
        &t.path().join("l"),
        &[file("ro", "root's"), Entry::Dir("pub", 0o1777), Entry::File("secret".into(), b"s".to_vec(), 0o600)],
    );
    let m = mount(
        Fs::Strata,
        &[t.path().join("l")],
        Some(&t.path().join("u")),
        Some(&t.path().join("w")),
        &t.path().join("m"),
    );
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
            .current_dir(&m.mnt)
            .output()
            .unwrap()
    };
    assert!(as_nobody("cat ro").status.success(), "allow_other lets other users read");
    assert!(!as_nobody("cat secret").status.success(), "mode 0600 keeps them out");
    assert!(!as_nobody("echo x >> ro").status.success(), "a 0644 root file is not theirs to write");
    assert!(as_nobody("echo mine > pub/new").status.success());
    let md = std::fs::metadata(m.path("pub/new")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534), "new files belong to their creator");
    let up = std::fs::metadata(t.path().join("u/pub/new")).unwrap();
    assert_eq!((up.uid(), up.gid()), (65534, 65534));
}

#[test]
fn root_rootless_mount_by_an_unprivileged_user_in_a_user_namespace() {
    if !require_root("root_rootless_mount_by_an_unprivileged_user_in_a_user_namespace") {
        return;
    }
    let t = tmp();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    build_layer(&t.path().join("l"), &[file("d/f", "lower"), file("d/gone", "x"), file("keep/old", "o")]);
    dirs(t.path(), &["u", "w", "m"]);
    let bin = t.path().join("strata");
    std::fs::copy(strata(), &bin).unwrap();
    // A rootless user's layers are their own files (mapped to root in the namespace).
    let chown = Command::new("chown").args(["-R", "65534:65534", "l", "u", "w", "m"]).current_dir(t.path()).status();
    assert!(chown.unwrap().success());
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = |s: &str| t.path().join(s).display().to_string();
    let script = format!(
        "set -e; {bin} mount -o lowerdir={l},upperdir={u},workdir={w} {m}; \
         echo more >> {m}/d/f; rm {m}/d/gone; rm -r {m}/keep; mkdir {m}/keep; cat {m}/d/f; umount {m}",
        bin = bin.display(),
        l = p("l"),
        u = p("u"),
        w = p("w"),
        m = p("m")
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--mount"])
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "rootless run failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lowermore\n");
    let wh = std::fs::symlink_metadata(t.path().join("u/d/gone")).unwrap();
    assert_eq!((wh.mode() & libc::S_IFMT, wh.rdev()), (libc::S_IFCHR, 0), "whiteout by mknod in the namespace");
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(t.path().join("u/keep"), "user.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y", "rootless opaque xattr is user.overlay.opaque");
    // The kernel reads the rootless upper dir with -o userxattr.
    let km = t.path().join("km");
    let opts = format!("lowerdir={},upperdir={},workdir={},userxattr", p("l"), p("u"), p("w"));
    std::fs::create_dir(&km).unwrap();
    assert!(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&km).status().unwrap().success());
    let listing = std::fs::read_dir(km.join("keep")).unwrap().count();
    let gone = km.join("d/gone").exists();
    let content = std::fs::read_to_string(km.join("d/f")).unwrap();
    Command::new("umount").arg(&km).status().unwrap();
    assert_eq!((listing, gone, content.as_str()), (0, false, "lowermore\n"));
}

fn getxattr(p: &Path, name: &str) -> Result<String, i32> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) => Err(e.raw_os_error()),
    }
}

#[test]
fn root_layer_xattr_names_the_layer_and_trace_prints_each_event() {
    if !require_root("root_layer_xattr_names_the_layer_and_trace_prints_each_event") {
        return;
    }
    let t = tmp();
    build_layer(&t.path().join("l0"), &[file("d/top", "t")]);
    build_layer(&t.path().join("l1"), &[file("d/f", "lower"), file("d/gone", "x"), file("old/x", "x")]);
    dirs(t.path(), &["u", "w", "m"]);
    let log = t.path().join("trace.log");
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        t.path().join("l0").display(),
        t.path().join("l1").display(),
        t.path().join("u").display(),
        t.path().join("w").display()
    );
    let mut child = Command::new(strata())
        .args(["mount", "--trace", "-o", &opts])
        .arg(t.path().join("m"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let m = t.path().join("m");
    for _ in 0..100 {
        if is_mounted(&m) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let l1 = t.path().join("l1").canonicalize().unwrap();
    assert_eq!(getxattr(&m.join("d/f"), "user.strata.layer"), Ok(format!("lower 2 ({})", l1.display())));
    std::fs::write(m.join("d/f"), "changed").unwrap();
    assert_eq!(getxattr(&m.join("d/f"), "user.strata.layer"), Ok("upper".into()));
    assert!(getxattr(&m.join("d"), "user.strata.layer").unwrap().starts_with("upper, merged with lower 1"));
    let listed = rustix::fs::llistxattr(m.join("d/f"), &mut [0u8; 256][..]).unwrap();
    assert_eq!(listed, 0, "the virtual xattr is not listed (cp -a must not copy it)");
    std::fs::remove_file(m.join("d/gone")).unwrap();
    std::fs::remove_dir_all(m.join("old")).unwrap();
    std::fs::create_dir(m.join("old")).unwrap();
    std::fs::rename(m.join("d"), m.join("e")).unwrap();
    Command::new("umount").arg(&m).status().unwrap();
    assert!(child.wait().unwrap().success());
    let trace = std::fs::read_to_string(&log).unwrap();
    for line in [
        "copy-up   /d/f  from lower 2",
        "whiteout  /d/gone",
        "whiteout  /old",
        "opaque    /old  (a new directory over a whiteout)",
        "redirect  /e  (its lower parts stay at /d)",
    ] {
        assert!(trace.contains(line), "missing {line:?} in:\n{trace}");
    }
}

#[test]
fn root_writes_never_reach_a_lower_file_even_with_a_reader_open_before_copy_up() {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;
    if !require_root("root_writes_never_reach_a_lower_file_even_with_a_reader_open_before_copy_up") {
        return;
    }
    let t = tmp();
    build_layer(&t.path().join("l"), &[file("f", &"lower data\n".repeat(1000))]);
    let m = mount(
        Fs::Strata,
        &[t.path().join("l")],
        Some(&t.path().join("u")),
        Some(&t.path().join("w")),
        &t.path().join("m"),
    );
    // exec 3< f
    let mut reader = std::fs::File::open(m.path("f")).unwrap();
    let mut first = [0u8; 5];
    reader.read_exact(&mut first).unwrap();
    // echo x > f, then a shared writable mapping of the new file
    let mut writer = std::fs::OpenOptions::new().read(true).write(true).open(m.path("f")).unwrap();
    writer.write_all(b"UPPER").unwrap();
    writer.flush().unwrap();
    let len = 4096;
    // SAFETY: a fresh shared mapping of `len` bytes of an open file; unmapped below.
    unsafe {
        let p = rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            writer.as_fd(),
            0,
        );
        if let Ok(p) = p {
            std::ptr::copy_nonoverlapping(b"MMAP!".as_ptr(), (p as *mut u8).add(10), 5);
            rustix::mm::msync(p, len, rustix::mm::MsyncFlags::SYNC).unwrap();
            rustix::mm::munmap(p, len).unwrap();
        }
    }
    drop(writer);
    reader.rewind().unwrap();
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert!(old.starts_with("lower data") || old.starts_with("UPPER"), "{}", &old[..20]);
    let lower = std::fs::read_to_string(t.path().join("l/f")).unwrap();
    assert_eq!(lower, "lower data\n".repeat(1000), "a write reached the lower layer");
    let upper = std::fs::read_to_string(t.path().join("u/f")).unwrap();
    assert!(upper.starts_with("UPPER"), "{}", &upper[..20]);
}

/// Stats the daemon makes while `work` runs (strace attached to every thread of `pid`).
fn daemon_stats_during(pid: i32, t: &Path, work: impl FnOnce()) -> usize {
    let out = t.join("strace.out");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=newfstatat,statx,fstat", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace (scripts/test installs it)");
    // strace writes nothing until it is attached: wait for the attach to show in the status.
    let tracer = |tid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
    };
    for _ in 0..200 {
        let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if tasks.iter().all(|t| tracer(t)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    work();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(strace.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    strace.wait().unwrap();
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    log.lines().filter(|l| l.contains("stat")).count()
}

/// `find` (names and types only) makes the daemon stat none of a listing's entries: the first
/// READDIRPLUS chunk, which the kernel sends whether or not anything will be stat'ed, carries no
/// attributes. `ls -l` still gets every entry's attributes, as on kernel overlayfs.
#[test]
fn root_find_makes_the_daemon_stat_no_listed_entry() {
    if !require_root("root_find_makes_the_daemon_stat_no_listed_entry") {
        return;
    }
    let t = tmp();
    dirs(t.path(), &["l1/d", "l2/d", "u", "w", "m", "k/u", "k/w", "k/m"]);
    for i in 0..300 {
        std::fs::write(t.path().join(format!("l{}/d/f{i:03}", 1 + i % 2)), format!("{i}")).unwrap();
    }
    let p = |s: &str| t.path().join(s).display().to_string();
    let lower = format!("{}:{}", p("l1"), p("l2"));
    let st = run(Command::new(strata())
        .args(["mount", "--lower", &lower, "--upper", &p("u"), "--work", &p("w")])
        .arg(t.path().join("m")));
    assert!(st.status.success());
    let pid = daemon_of(&t.path().join("m")).expect("the daemon");
    let found = std::cell::RefCell::new(String::new());
    let stats = daemon_stats_during(pid, t.path(), || {
        let out = run(Command::new("find").arg(t.path().join("m/d")));
        *found.borrow_mut() = String::from_utf8_lossy(&out.stdout).into_owned();
    });
    assert_eq!(found.borrow().lines().count(), 301, "find lists d and its 300 files");
    assert!(stats < 30, "find over 300 entries made the daemon stat {stats} times");
    // ls -l sees the same as kernel overlayfs.
    let kernel = format!("lowerdir={lower},upperdir={},workdir={}", p("k/u"), p("k/w"));
    assert!(run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &kernel, &p("k/m")])).status.success());
    let ls = |d: &str| {
        let out = run(Command::new("ls").args(["-ln", "--time-style=+%s"]).current_dir(t.path().join(d)));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (strata_ls, kernel_ls) = (ls("m/d"), ls("k/m/d"));
    let _ = Command::new("umount").arg(p("k/m")).status();
    let _ = Command::new("umount").arg(p("m")).status();
    assert_eq!(strata_ls.lines().count(), 301);
    assert_eq!(strata_ls, kernel_ls);
}
