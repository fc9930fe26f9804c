//! Integration tests of containers: `strata run` and `ps`, `exec`, `stop`, `start`, `rm`,
//! `logs`, on the busybox fixture image (`fixtures/images/oci-multi`), each on its own `--root`.
//!
//! Every test here makes namespaces and FUSE mounts, so all are named `root_…`: without root
//! they return early, except under `CI=true`, where they fail. The rootless test drops to uid
//! 65534 with `setpriv` (util-linux) and needs `/dev/fuse` usable by it.

#[allow(unused_imports)] // its helpers for the union tests are not used here
mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::container::{Env, IMAGE, LIMIT, finish, lines, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Whether a process on the host has this exact command line (NUL-separated).
fn host_has_process(cmdline: &str) -> bool {
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs.filter_map(|e| std::fs::read(e.path().join("cmdline")).ok()).any(|c| c == cmdline.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Output and exit status

#[test]
fn root_run_gives_output_and_exit_codes() {
    if !common::require_root("root_run_gives_output_and_exit_codes") {
        return;
    }
    let env = Env::new();
    assert_eq!(env.ok(&["run", "--rm", IMAGE, "echo", "hello"]), "hello\n");
    let out = env.run(&["run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // PID 1's end ends the container: a child it leaves behind is killed with its PID namespace.
    let started = Instant::now();
    assert_eq!(env.ok(&["run", "--rm", IMAGE, "sh", "-c", "sleep 4711 & echo bg"]), "bg\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!host_has_process("sleep\x004711\x00"), "a process of the container outlived it");
    // Killed by SIGKILL from outside: 128 + 9.
    let child = env.spawn(&["run", "--name", "k", IMAGE, "sleep", "1000"]);
    let pid = env.wait_status("k", "running")["state"]["pid"].as_i64().unwrap();
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert_eq!(finish(child, LIMIT).status.code(), Some(137));
    let r = env.wait_status("k", "exited");
    assert_eq!(r["state"]["exit_code"], 137);
    assert!(r["state"]["pid"].is_null() && r["state"]["finished"].is_string());
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(!env.mounted());
}

#[test]
fn root_the_image_command_runs_by_default() {
    if !common::require_root("root_the_image_command_runs_by_default") {
        return;
    }
    let env = Env::new();
    // CMD is /bin/sh: with no stdin it reads nothing and exits 0.
    let out = env.run(&["run", "--rm", IMAGE]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.ok(&["run", "--rm", "-i", IMAGE, "true"]), "");
}

// ---------------------------------------------------------------------------------------------
// Configuration from the image and the flags

#[test]
fn root_env_workdir_and_user_come_from_the_image_and_flags() {
    if !common::require_root("root_env_workdir_and_user_come_from_the_image_and_flags") {
        return;
    }
    let env = Env::new();
    let script = "echo \"$FX_VAR\"; pwd; id -u; id -g; echo $PATH; echo $HOME";
    let out = env.sh(&[], script);
    assert_eq!(
        lines(&out),
        ["hello fixture", "/data", "0", "0", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "/root"]
    );
    let out =
        env.sh(&["-e", "FX_VAR=over", "-e", "NEW=1", "-w", "/tmp/wd", "-u", "user"], &format!("{script}; echo $NEW"));
    assert_eq!(lines(&out)[..4], ["over", "/tmp/wd", "1000", "1000"]);
    assert_eq!(lines(&out)[5..], ["/home/user", "1"]);
    assert_eq!(lines(&env.sh(&["-u", "4242:65534"], "id -u; id -g")), ["4242", "65534"]);
    let out = env.sh(&["-e", "PATH=/bin"], "echo $PATH");
    assert_eq!(out, "/bin\n");
}

// ---------------------------------------------------------------------------------------------
// The upper dir and volumes

#[test]
fn root_changes_are_written_to_the_container_upper_dir() {
    if !common::require_root("root_changes_are_written_to_the_container_upper_dir") {
        return;
    }
    let env = Env::new();
    env.ok(&["run", "--name", "w", IMAGE, "sh", "-c", "echo new > /data/made.txt; rm /data/keep.txt; cat /etc/hosts"]);
    let upper = env.dir_of("w").join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("data/made.txt")).unwrap(), "new\n");
    let wh = std::fs::symlink_metadata(upper.join("data/keep.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "a deleted file becomes a whiteout");
    // The bind-mounted /etc files never reach the upper dir (nor would a commit see them).
    assert!(!upper.join("etc").exists());
    // The init layer's /etc looks as the image's does (so a copy-up of it changes nothing).
    let image_etc = env.ok(&["run", "--rm", IMAGE, "sh", "-c", "stat -c '%a %u:%g %Y' /etc"]);
    let mnt = env.dir.path().join("img");
    std::fs::create_dir_all(&mnt).unwrap();
    env.ok(&["image", "mount", IMAGE, mnt.to_str().unwrap()]);
    let md = std::fs::metadata(mnt.join("etc")).unwrap();
    env.ok(&["image", "umount", mnt.to_str().unwrap()]);
    use std::os::unix::fs::MetadataExt;
    let want = format!("{:o} {}:{} {}\n", md.mode() & 0o7777, md.uid(), md.gid(), md.mtime());
    assert_eq!(image_etc, want);
    let r = env.record("w");
    assert_eq!(r["state"]["status"], "exited");
    assert_eq!(r["image"], IMAGE);
    assert!(r["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(r["id"].as_str().unwrap().len(), 64);
}

#[test]
fn root_volumes_are_bind_mounts_from_the_host() {
    if !common::require_root("root_volumes_are_bind_mounts_from_the_host") {
        return;
    }
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("from-host"), "h\n").unwrap();
    let rw = format!("{}:/mnt/vol", vol.display());
    let out = env.sh(&["-v", &rw], "cat /mnt/vol/from-host; echo c > /mnt/vol/from-ctr");
    assert_eq!(out, "h\n");
    assert_eq!(std::fs::read_to_string(vol.join("from-ctr")).unwrap(), "c\n");
    let ro = format!("{}:/ro:ro", vol.display());
    let out = env.run(&["run", "--rm", "-v", &ro, IMAGE, "sh", "-c", "echo x > /ro/no"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!vol.join("no").exists());
    let err = env.fails(125, &["run", "--rm", "-v", "/nonexistent/strata-vol:/x", IMAGE, "true"]);
    assert!(err.contains("/nonexistent/strata-vol") && err.contains("does not exist"), "{err}");
    assert!(!env.mounted());
}

#[test]
fn root_a_symlink_in_the_image_cannot_send_a_volume_onto_the_host() {
    if !common::require_root("root_a_symlink_in_the_image_cannot_send_a_volume_onto_the_host") {
        return;
    }
    let env = Env::new();
    let (vol, host) = (env.dir.path().join("vol"), env.dir.path().join("host-target"));
    std::fs::create_dir(&vol).unwrap();
    std::fs::create_dir(&host).unwrap();
    let v = format!("{}:/evil/sub", vol.display());
    env.ok(&["run", "--name", "s", "-v", &v, IMAGE, "ls", "-d", "/evil/sub"]);
    // While it is stopped, /evil in its rootfs becomes an absolute symlink to a host path.
    let upper = env.dir_of("s").join("upper");
    std::fs::remove_dir_all(upper.join("evil")).unwrap();
    std::os::unix::fs::symlink(&host, upper.join("evil")).unwrap();
    env.ok(&["start", "s"]);
    let r = env.wait_status("s", "exited");
    assert_eq!(r["state"]["exit_code"], 0, "{r}");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "nothing was made or mounted on the host path");
    let inside = env.dir_of("s").join("upper").join(host.strip_prefix("/").unwrap()).join("sub");
    assert!(inside.is_dir(), "the target was made inside the rootfs instead");
    assert!(!env.mounted());
}

// ---------------------------------------------------------------------------------------------
// Isolation

#[test]
fn root_pid_1_hostname_proc_and_mounts_are_the_container_s() {
    if !common::require_root("root_pid_1_hostname_proc_and_mounts_are_the_container_s") {
        return;
    }
    let env = Env::new();
    let host_name = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let out = env.sh(&["--hostname", "box"], "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname");
    assert_eq!(lines(&out), ["1", "sh -c echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname ", "box"]);
    assert_eq!(rustix::system::uname().nodename().to_string_lossy(), host_name, "the host's hostname is untouched");
    // /proc holds the container's processes only: sh (1) and the few the pipeline runs.
    let pids = env.sh(&[], "ls /proc | grep '^[0-9]*$'");
    assert!(pids.lines().all(|p| p.parse::<u32>().unwrap() < 10), "{pids}");
    assert!(pids.lines().any(|p| p == "1"));
    let mounts = env.sh(&[], "cat /proc/mounts");
    let allowed = ["/", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];
    for line in mounts.lines() {
        let at = line.split(' ').nth(1).unwrap();
        let kernel = ["/dev", "/proc", "/sys"].iter().any(|k| at == *k || at.starts_with(&format!("{k}/")));
        assert!(allowed.contains(&at) || kernel, "host mount visible: {line}");
    }
    let out = env.run(&["run", "--rm", IMAGE, "sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"), "/proc/sys is read-only");
    assert_eq!(env.sh(&[], "cat /proc/keys"), "", "/proc/keys is masked");
    // A device node made inside (CAP_MKNOD is kept) cannot reach a host device.
    for dir in ["/tmp", "/dev"] {
        let script = format!("mknod {dir}/disk b 7 0 && head -c 1 {dir}/disk");
        let out = env.run(&["run", "--rm", IMAGE, "sh", "-c", &script]);
        assert_ne!(out.status.code(), Some(0), "a device node in {dir} could be opened");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    }
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()));
    let status = env.sh(&[], "grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status");
    assert_eq!(lines(&status), ["CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1"]);
    let net = env.sh(&["--network", "none"], "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
    assert_eq!(net, "lo\n", "network none: loopback only");
    let net = env.sh(&[], "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort");
    assert_eq!(net, "eth0\nlo\n", "the default network: its own namespace, connected by the helper");
    assert!(env.sh(&["--network", "host"], "cat /proc/net/dev").lines().count() >= 3);
}

/// The rootfs is a FUSE mount the container's own processes cannot get behind: no way to the
/// FUSE device, `..` and absolute symlinks end at its own root, and the host paths its mount
/// table names (as docker's does, for `/etc/hosts`) lead nowhere inside.
#[test]
fn root_the_container_cannot_get_behind_its_fuse_rootfs() {
    if !common::require_root("root_the_container_cannot_get_behind_its_fuse_rootfs") {
        return;
    }
    let env = Env::new();
    let script = "test -e /dev/fuse && echo fuse-visible; \
                  mknod /tmp/fuse c 10 229 && (cat /tmp/fuse >/dev/null 2>&1 && echo fuse-open || echo fuse-denied); \
                  ln -s /../../../../.. /tmp/up; \
                  [ \"$(ls /tmp/up/)\" = \"$(ls /)\" ] && echo up-is-root; \
                  [ \"$(ls /proc/1/root/../..)\" = \"$(ls /)\" ] && echo proc-root-is-root; \
                  grep ' / ' /proc/self/mountinfo | grep -c fuse";
    assert_eq!(lines(&env.sh(&[], script)), ["fuse-denied", "up-is-root", "proc-root-is-root", "1"]);
    let script = "p=$(grep ' /etc/hosts ' /proc/self/mountinfo | cut -d' ' -f4); echo $p; \
                  test -e $p || echo absent; test -e $(dirname $p)/upper || echo no-upper";
    let got = lines(&env.sh(&[], script)).into_iter().map(str::to_string).collect::<Vec<_>>();
    assert!(got[0].starts_with(&env.root().display().to_string()), "{got:?}");
    assert_eq!(got[1..], ["absent", "no-upper"], "{got:?}");
    assert!(!env.mounted());
}

#[test]
fn root_dev_sys_etc_files_and_every_namespace_are_the_container_s() {
    if !common::require_root("root_dev_sys_etc_files_and_every_namespace_are_the_container_s") {
        return;
    }
    let env = Env::new();
    // A minimal /dev: the harmless devices, a private devpts, shm; and links into /proc.
    let dev = env.sh(&[], "ls /dev | tr '\\n' ' '; echo; stat -c '%F %t,%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty");
    let l = lines(&dev);
    assert_eq!(l[0], "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ", "{dev}");
    let devices = ["1,3", "1,5", "1,7", "1,8", "1,9", "5,0"].map(|d| format!("character special file {d}"));
    assert_eq!(l[1..], devices, "{dev}");
    let script = "head -c 5 /dev/urandom | wc -c; head -c 3 /dev/zero | od -An -tx1 | tr -d ' '; \
                  echo x > /dev/full || echo full refused; echo shm > /dev/shm/f && cat /dev/shm/f; \
                  grep -E ' /dev/(pts|shm) ' /proc/mounts | cut -d' ' -f1-3";
    assert_eq!(
        lines(&env.sh(&[], script)),
        ["5", "000000", "full refused", "shm", "none /dev/pts devpts", "none /dev/shm tmpfs"]
    );
    // /sys is read-only.
    let out = env.run(&["run", "--rm", IMAGE, "sh", "-c", "grep ' /sys ' /proc/mounts; touch /sys/x"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"), "{stdout}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    // Every namespace but the user one (as root) differs from the host's; --network host keeps the network.
    let host_ns = |n: &str| std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap().display().to_string();
    let names = ["mnt", "pid", "uts", "ipc", "net", "user"];
    let script = names.map(|n| format!("readlink /proc/self/ns/{n}")).join("; ");
    for (flags, own) in [(&[][..], &names[..5]), (&["--network", "host"][..], &names[..4])] {
        let inside = env.sh(flags, &script);
        for (n, ns) in names.iter().zip(inside.lines()) {
            assert_eq!(ns != host_ns(n), own.contains(n), "{n} namespace {flags:?}: {ns}");
        }
    }
    // /etc/hostname, /etc/hosts and /etc/resolv.conf are the container's.
    let etc = env.sh(&["--hostname", "box"], "cat /etc/hostname; grep -c localhost /etc/hosts; grep box /etc/hosts");
    assert_eq!(lines(&etc), ["box", "2", "127.0.1.1\tbox"]);
    if let Ok(host) = std::fs::read_to_string("/etc/resolv.conf") {
        assert_eq!(env.sh(&["--network", "host"], "cat /etc/resolv.conf"), host);
    }
}

// ---------------------------------------------------------------------------------------------
// Signals and terminals

#[test]
fn root_signals_are_passed_to_pid_1() {
    if !common::require_root("root_signals_are_passed_to_pid_1") {
        return;
    }
    let env = Env::new();
    for (sig, code) in [("TERM", 42), ("INT", 43)] {
        let name = format!("sig{code}");
        let script = format!("trap 'exit {code}' {sig}; echo ready; while :; do sleep 0.1; done");
        let mut child = env.spawn(&["run", "--name", &name, IMAGE, "sh", "-c", &script]);
        // The trap is set once "ready" is out.
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
        assert_eq!(first, "ready\n");
        Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
        let out = finish(child, LIMIT);
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!env.mounted());
}

#[test]
fn root_init_reaps_orphans_and_passes_signals_and_the_status_on() {
    if !common::require_root("root_init_reaps_orphans_and_passes_signals_and_the_status_on") {
        return;
    }
    let env = Env::new();
    // An orphan goes to PID 1; `sleep` as PID 1 never reaps it, the --init reaper does.
    let states = |name: &str| env.ok(&["exec", name, "ps", "-o", "stat,comm"]);
    for (name, init) in [("plain", false), ("reaped", true)] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(init.then_some("--init"));
        args.extend([IMAGE, "sleep", "1000"]);
        env.ok(&args);
        env.wait_status(name, "running");
        env.ok(&["exec", name, "sh", "-c", "sleep 0.1 &"]);
        if init {
            // Gone, not a zombie: only init, the command and ps are left.
            wait_until("the orphan was never reaped under --init", || states(name).lines().count() == 4);
            let ps = states(name);
            assert!(!ps.contains('Z'), "{ps}");
            assert_eq!(
                ps.lines().nth(1).unwrap().split_whitespace().nth(1),
                Some("init"),
                "PID 1 is the reaper:\n{ps}"
            );
        } else {
            wait_until("the orphan never became a zombie under sleep", || {
                states(name).lines().any(|l| l.starts_with('Z'))
            });
        }
    }
    // The reaper passes SIGTERM on: stop needs no SIGKILL.
    let started = Instant::now();
    env.ok(&["stop", "-t", "30", "reaped"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(env.record("reaped")["state"]["exit_code"], 143);
    // The command is PID 2; its status (or 128+signal) is the container's.
    assert_eq!(env.sh(&["--init"], "echo $$"), "2\n");
    assert_eq!(env.run(&["run", "--rm", "--init", IMAGE, "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(env.run(&["run", "--rm", "--init", IMAGE, "sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    let err = env.fails(127, &["run", "--rm", "--init", IMAGE, "no-such-program"]);
    assert!(err.contains("no-such-program"), "{err}");
    let script = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = env.spawn(&["run", "--rm", "--init", IMAGE, "sh", "-c", script]);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(finish(child, LIMIT).status.code(), Some(42));
    env.ok(&["rm", "-f", "plain", "reaped"]);
    assert!(!env.mounted());
}

/// Runs `strata ARGS` under `script` (a terminal), feeding `input` after a pause; returns its
/// exit code and output (without carriage returns).
fn in_terminal(env: &Env, args: &str, input: &str) -> (Option<i32>, String) {
    let line = format!("stty rows 30 cols 100; {} --root {} {args}", env.bin.display(), env.root().display());
    let mut child = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils) is needed");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(1500));
        let _ = stdin.write_all(input.as_bytes());
        std::thread::sleep(Duration::from_secs(30));
    });
    let out = finish(child, LIMIT);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).replace('\r', ""))
}

#[test]
fn root_tty_is_a_real_terminal() {
    if !common::require_root("root_tty_is_a_real_terminal") {
        return;
    }
    let env = Env::new();
    let (code, text) =
        in_terminal(&env, &format!("run -t --rm {IMAGE} sh -c 'tty; stty size; echo $TERM; exit 4'"), "");
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("/dev/pts/0\n30 100\nxterm\n"), "{text:?}");
    let (code, text) = in_terminal(&env, &format!("run -it --rm {IMAGE} sh"), "echo in $$\nexit 9\n");
    assert_eq!(code, Some(9), "{text}");
    assert!(text.contains("in 1\n"), "{text:?}");
    env.ok(&["run", "-d", "--name", "t", IMAGE, "sleep", "1000"]);
    env.wait_status("t", "running");
    let (code, text) = in_terminal(&env, "exec -it t sh", "tty; echo exec $$\nexit 2\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("/dev/pts/") && text.contains("exec "), "{text:?}");
    env.ok(&["rm", "-f", "t"]);
    // -i without -t: stdin is passed on.
    let mut child =
        env.cmd(&["run", "--rm", "-i", IMAGE, "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    }
    let out = finish(child, LIMIT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
}

#[test]
fn root_tty_follows_window_size_changes() {
    if !common::require_root("root_tty_follows_window_size_changes") {
        return;
    }
    let env = Env::new();
    let p = strata::sys::pty::open_pty().unwrap();
    use std::os::fd::AsFd;
    strata::sys::pty::set_size(p.master.as_fd(), strata::sys::pty::Size { rows: 24, cols: 80 }).unwrap();
    let script = "stty size; while [ \"$(stty size)\" = '24 80' ]; do sleep 0.05; done; stty size";
    let mut cmd = env.cmd(&["run", "-t", "--rm", IMAGE, "sh", "-c", script]);
    let slave = |p: &strata::sys::pty::Pty| Stdio::from(p.slave.try_clone().unwrap());
    let child = cmd.stdin(slave(&p)).stdout(slave(&p)).stderr(slave(&p)).spawn().unwrap();
    let mut master = std::fs::File::from(p.master.try_clone().unwrap());
    drop(p.slave);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut resized = false;
    let deadline = Instant::now() + LIMIT;
    while !seen.contains("40 120") {
        assert!(Instant::now() < deadline, "no resize seen: {seen:?}");
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
        if !resized && seen.contains("24 80") {
            strata::sys::pty::set_size(p.master.as_fd(), strata::sys::pty::Size { rows: 40, cols: 120 }).unwrap();
            Command::new("kill").args(["-WINCH", &child.id().to_string()]).status().unwrap();
            resized = true;
        }
    }
    let out = finish(child, LIMIT);
    assert_eq!(out.status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Detached containers and the verbs around them

#[test]
fn root_detached_container_ps_exec_stop_start_rm() {
    if !common::require_root("root_detached_container_ps_exec_stop_start_rm") {
        return;
    }
    let env = Env::new();
    let id = env.ok(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", "echo up; while :; do sleep 0.1; done"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let r = env.wait_status("web", "running");
    assert!(r["state"]["pid"].as_i64().unwrap() > 0);
    let ps = env.ok(&["ps"]);
    let header: Vec<&str> = ps.lines().next().unwrap().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], "{ps}");
    let row = ps.lines().find(|l| l.starts_with(&id[..12])).unwrap();
    assert!(row.contains(&format!("   {IMAGE}   \"sh -c echo up;")) && row.contains(" ago "), "{row}");
    assert!(ps.lines().any(|l| l.starts_with(&id[..12]) && l.contains("Up ") && l.ends_with("web")), "{ps}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(mounts.contains(id), "the rootfs is mounted while the container runs");
    // exec joins its namespaces.
    let cmdline = env.ok(&["exec", "web", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo data > /data/kept"]);
    assert!(cmdline.starts_with("sh -c echo up;"), "{cmdline}");
    assert_eq!(env.run(&["exec", "web", "sh", "-c", "exit 5"]).status.code(), Some(5));
    assert!(env.fails(127, &["exec", "web", "no-such-program"]).contains("not found"));
    assert_eq!(env.ok(&["exec", "-u", "user", "-w", "/tmp", "web", "sh", "-c", "id -u; pwd"]), "1000\n/tmp\n");
    // stop: PID 1 ignores SIGTERM (no handler), so SIGKILL follows the grace period.
    assert_eq!(env.ok(&["stop", "-t", "1", "web"]), "web\n");
    let r = env.record("web");
    assert_eq!(r["state"]["status"], "exited");
    assert_eq!(r["state"]["exit_code"], 137);
    assert!(!std::fs::read_to_string("/proc/mounts").unwrap().contains(id), "stop unmounts");
    assert!(!env.ok(&["ps"]).contains("web"));
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(env.fails(125, &["exec", "web", "true"]).contains("not running"));
    // start: the upper dir is kept.
    assert_eq!(env.ok(&["start", "web"]), "web\n");
    env.wait_status("web", "running");
    assert_eq!(env.ok(&["exec", "web", "cat", "/data/kept"]), "data\n");
    wait_until("the log never held both starts", || env.ok(&["logs", "web"]) == "up\nup\n");
    let err = env.fails(1, &["rm", "web"]);
    assert!(err.contains("is running"), "{err}");
    assert_eq!(env.ok(&["rm", "-f", &id[..8]]), format!("{}\n", &id[..8]));
    assert!(!env.root().join("containers").join(id).exists());
    assert!(!env.mounted(), "no mount left after rm");
    assert_eq!(std::fs::read_dir(env.root().join("mounts")).unwrap().count(), 0, "the store forgets the container");
    env.fails(1, &["rm", "web"]);
}

#[test]
fn root_rm_flag_removes_the_container_and_start_of_a_running_one_fails() {
    if !common::require_root("root_rm_flag_removes_the_container_and_start_of_a_running_one_fails") {
        return;
    }
    let env = Env::new();
    env.ok(&["run", "--rm", "--name", "gone", IMAGE, "true"]);
    assert!(env.container_ids().is_empty());
    env.ok(&["run", "-d", "--rm", "--name", "bg", IMAGE, "sleep", "1000"]);
    env.wait_status("bg", "running");
    let err = env.fails(1, &["start", "bg"]);
    assert!(err.contains("already running"), "{err}");
    env.ok(&["stop", "-t", "0", "bg"]);
    wait_until("--rm did not remove the container", || env.container_ids().is_empty());
    assert!(!env.mounted());
}

#[test]
fn root_a_killed_monitor_leaves_a_consistent_record() {
    if !common::require_root("root_a_killed_monitor_leaves_a_consistent_record") {
        return;
    }
    let env = Env::new();
    env.ok(&["run", "-d", "--name", "km", IMAGE, "sh", "-c", "echo kept > /data/kept; sleep 1000"]);
    let r = env.wait_status("km", "running");
    let kept = env.dir_of("km").join("upper/data/kept");
    wait_until("the file was never written", || std::fs::read_to_string(&kept).ok().as_deref() == Some("kept\n"));
    let monitor = r["state"]["monitor_pid"].as_i64().unwrap();
    Command::new("kill").args(["-9", &monitor.to_string()]).status().unwrap();
    // Its PID 1 goes with it; ps notices, records the end and takes the dead mount down.
    wait_until("the container never showed as exited", || env.ok(&["ps", "-a"]).contains("Exited"));
    let r = env.record("km");
    assert_eq!(r["state"]["status"], "exited");
    assert!(r["state"]["pid"].is_null());
    assert!(!env.mounted());
    assert_eq!(std::fs::read_to_string(env.dir_of("km").join("upper/data/kept")).unwrap(), "kept\n");
    env.ok(&["start", "km"]);
    env.wait_status("km", "running");
    assert_eq!(env.ok(&["exec", "km", "cat", "/data/kept"]), "kept\n");
    env.ok(&["rm", "-f", "km"]);
    assert!(!env.mounted());
}

// ---------------------------------------------------------------------------------------------
// Failures

#[test]
fn root_failures_are_one_line_and_leave_no_mount() {
    if !common::require_root("root_failures_are_one_line_and_leave_no_mount") {
        return;
    }
    let env = Env::new();
    let err = env.fails(125, &["run", "no-such-image"]);
    assert!(err.contains("No such image: no-such-image"), "{err}");
    let err = env.fails(127, &["run", IMAGE, "no-such-program"]);
    assert!(err.contains("no-such-program") && err.contains("not found"), "{err}");
    let err = env.fails(126, &["run", IMAGE, "/etc/passwd"]);
    assert!(err.contains("/etc/passwd"), "{err}");
    let err = env.fails(125, &["run", "-u", "nobody-here", IMAGE, "true"]);
    assert!(err.contains("nobody-here"), "{err}");
    let err = env.fails(125, &["run", "-w", "relative", IMAGE, "true"]);
    assert!(err.contains("absolute"), "{err}");
    let err = env.fails(125, &["run", "-w", "/etc/passwd", IMAGE, "true"]);
    assert!(err.contains("working directory /etc/passwd") && err.contains("Not a directory"), "{err}");
    let err = env.fails(125, &["run", "-v", "/tmp:/etc/passwd", IMAGE, "true"]);
    assert!(err.contains("volume /tmp on /etc/passwd: the source is a directory, the target is not"), "{err}");
    let err = env.fails(125, &["run", "-v", "/etc/hostname:/etc", IMAGE, "true"]);
    assert!(err.contains("the source is a file, the target is a directory"), "{err}");
    let err = env.fails(125, &["run", "-v", "bad name:/x", IMAGE, "true"]);
    assert!(err.contains("\"bad name\" includes invalid characters for a local volume name"), "{err}");
    let err = env.fails(125, &["run", "-v", "/tmp:relative", IMAGE, "true"]);
    assert!(err.contains("invalid mount target \"relative\""), "{err}");
    env.fails(125, &["exec", "no-such-container", "true"]);
    assert!(!env.mounted());
    assert!(!env.ok(&["ps", "-a"]).contains("Up "));
}

// ---------------------------------------------------------------------------------------------
// Rootless

#[test]
fn root_rootless_run_as_an_unprivileged_user() {
    if !common::require_root("root_rootless_run_as_an_unprivileged_user") {
        return;
    }
    // The test drops to uid 65534, which must be able to open /dev/fuse.
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let env = Env::with_user(Some(65534));
    let out = env.sh(&[], "id -u; cat /proc/self/uid_map | tr -s ' '; echo $$; hostname");
    let l = lines(&out);
    assert_eq!(l[0], "0", "the caller is root inside");
    assert!(l[1].trim().starts_with("0 65534"), "{out}");
    assert_eq!(l[2], "1");
    env.ok(&["run", "--name", "rl", IMAGE, "sh", "-c", "echo rootless > /data/rl; rm /data/keep.txt"]);
    let upper = env.dir_of("rl").join("upper");
    let made = std::fs::metadata(upper.join("data/rl")).unwrap();
    assert_eq!(made.uid(), 65534, "written as the caller on the host");
    assert!(std::fs::symlink_metadata(upper.join("data/keep.txt")).is_ok(), "a whiteout (or .wh. file) is left");
    env.ok(&["run", "-d", "--name", "rbg", IMAGE, "sleep", "1000"]);
    env.wait_status("rbg", "running");
    assert_eq!(env.ok(&["exec", "rbg", "cat", "/proc/1/cmdline"]), "sleep\x001000\x00");
    env.ok(&["stop", "-t", "0", "rbg"]);
    env.ok(&["rm", "rbg", "rl"]);
    assert!(env.container_ids().is_empty());
    assert!(!env.mounted());
}

#[test]
fn root_rootless_with_subordinate_ids_maps_the_range() {
    if !common::require_root("root_rootless_with_subordinate_ids_maps_the_range") {
        return;
    }
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let env = Env::with_user(Some(65534));
    let out = env.with_subordinate_ids(&format!(
        "eval \"$S run --rm {IMAGE} cat /proc/self/uid_map /proc/self/gid_map\" && \
         eval \"$S run --name sub -u user {IMAGE} sh -c 'id -u; echo u > /tmp/by-user'\" && \
         eval \"$S run --rm {IMAGE} sh -c 'chown 1000:1000 /tmp && stat -c %u:%g /tmp'\" && \
         eval \"$S run --rm -u user {IMAGE} sh -c 'stat -c %u:%g:%a /home/user/owned.txt; wc -c < /home/user/owned.txt'\""
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let maps: Vec<Vec<&str>> = text.lines().take(4).map(|l| l.split_whitespace().collect()).collect();
    for map in [&maps[..2], &maps[2..]] {
        assert_eq!(map, [["0", "65534", "1"], ["1", "300000", "65536"]], "uid_map, gid_map:\n{text}");
    }
    // The image's owners, which the rootless store could only record, are the container's:
    // the user reads a file of theirs that is not world-readable.
    assert_eq!(lines(&text)[4..], ["1000", "1000:1000", "1000:1000:640", "14"], "{text}");
    let made = std::fs::metadata(env.dir_of("sub").join("upper/tmp/by-user")).unwrap();
    assert_eq!((made.uid(), made.gid()), (300000 + 999, 300000 + 999), "uid 1000 inside is 300999 on the host");
    env.ok(&["rm", "sub"]);
}

#[test]
fn root_the_layer_xattr_follows_a_copy_up_in_a_running_container() {
    if !common::require_root("root_the_layer_xattr_follows_a_copy_up_in_a_running_container") {
        return;
    }
    let env = Env::new();
    env.ok(&["run", "-d", "--name", "x", IMAGE, "sleep", "1000"]);
    env.wait_status("x", "running");
    let file = env.dir_of("x").join("merged/data/keep.txt");
    let getfattr = || {
        let out = Command::new("getfattr").args(["--only-values", "-n", "user.strata.layer"]).arg(&file).output();
        let out = out.expect("getfattr (attr) is needed");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // keep.txt comes from the image's layer 3; the mount counts its lower layers from the top
    // (1 is the container's init layer, 2 the image's layer 5).
    let layer3 = env.root().join("layers/374562354561fa2e97fe9138f01c80673d980ce07711951a7611588d71ed1efb");
    assert_eq!(getfattr(), format!("lower 4 ({})", layer3.display()));
    let listed = Command::new("getfattr").args(["-d", "-m", "-"]).arg(&file).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("strata"), "the virtual xattr is never listed");
    env.ok(&["exec", "x", "sh", "-c", "echo more >> /data/keep.txt"]);
    assert_eq!(getfattr(), "upper");
    let out = env.ok(&["explain", "x", "/data/keep.txt"]);
    assert!(out.contains("Shown from the container's upper layer") && out.contains("copied up from layer 3"), "{out}");
    env.ok(&["rm", "-f", "x"]);
    assert!(!env.mounted());
}
