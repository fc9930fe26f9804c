//! Integration tests of volumes: named and anonymous volumes (`-v NAME:/p`, `-v /p`, `--mount`,
//! an image's `VOLUME`), filled once from the image, shared by `--volumes-from`, read-only
//! mounts, tmpfs (`--tmpfs`, `--mount type=tmpfs`), their removal with containers (`rm -v`,
//! `run --rm`), the `strata volume` verbs and `strata inspect CTR`'s `Mounts`; as root and
//! rootless. Each test has a store of its own with the busybox fixture image
//! (`fixtures/images/oci-multi`).
//!
//! Every test here makes namespaces and FUSE mounts, so all are named `root_…`: without root
//! they return early, except under `CI=true`, where they fail. The rootless ones drop to uid
//! 65534 with `setpriv` (util-linux) and need `/dev/fuse` usable by it.

#[allow(unused_imports)] // its helpers for the union tests are not used here
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::container::{Env, IMAGE, LIMIT, finish, lines};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `ROOT/volumes/NAME/_data`.
fn data(env: &Env, name: &str) -> PathBuf {
    env.root().join("volumes").join(name).join("_data")
}

/// The names `volume ls -q` prints.
fn volumes(env: &Env) -> Vec<String> {
    env.ok(&["volume", "ls", "-q"]).lines().map(str::to_string).collect()
}

/// The anonymous volumes: the names of 64 hex characters.
fn anonymous(env: &Env) -> Vec<String> {
    volumes(env).into_iter().filter(|n| n.len() == 64).collect()
}

/// The `Mounts` of `strata inspect CTR`.
fn mounts_of(env: &Env, name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
    v[0]["Mounts"].as_array().unwrap().clone()
}

/// What `find` says of every entry below `dir`: path, type, mode, owner, size and link target
/// of non-directories, and the modification times (directories' sizes differ by filesystem).
fn tree(dir: &Path) -> Vec<String> {
    let find = |args: &[&str]| {
        let out = Command::new("find").arg(".").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let dirs = find(&["-type", "d", "-printf", "%p %y %m %U:%G %T@\\n"]);
    let rest = find(&["!", "-type", "d", "-printf", "%p %y %m %U:%G %s %l %T@\\n"]);
    let mut all: Vec<String> = dirs.lines().chain(rest.lines()).map(str::to_string).collect();
    all.sort();
    all
}

/// The image's tree at `path`, through a read-only image mount.
fn image_tree(env: &Env, path: &str) -> Vec<String> {
    let mnt = env.dir.path().join("image-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    env.ok(&["image", "mount", IMAGE, mnt.to_str().unwrap()]);
    let t = tree(&mnt.join(path.trim_start_matches('/')));
    env.ok(&["image", "umount", mnt.to_str().unwrap()]);
    t
}

fn as_user(uid: u32) -> Env {
    // The test drops to `uid`, which must be able to open /dev/fuse.
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    Env::with_user(Some(uid))
}

// ---------------------------------------------------------------------------------------------
// Named volumes and the volume verbs

#[test]
fn root_a_named_volume_outlives_the_containers_that_share_it() {
    if !common::require_root("root_a_named_volume_outlives_the_containers_that_share_it") {
        return;
    }
    let env = Env::new();
    named_volume_outlives_its_containers(&env);
}

fn named_volume_outlives_its_containers(env: &Env) {
    // Made on first use, filled from the image's /data, written by one container, read by another.
    env.ok(&["run", "--name", "writer", "-v", "shared:/data", IMAGE, "sh", "-c", "echo w > /data/note"]);
    assert_eq!(volumes(env), ["shared"]);
    assert_eq!(env.sh(&["-v", "shared:/srv"], "cat /srv/note /srv/keep.txt"), "w\nkeep\nmore\n");
    // In use by a stopped container: refused, in one line, naming it.
    let id = env.record("writer")["id"].as_str().unwrap().to_string();
    let err = env.fails(1, &["volume", "rm", "shared"]);
    assert_eq!(err, format!("strata: remove shared: volume is in use - [{id}]\n"));
    env.ok(&["rm", "-v", "writer"]);
    assert_eq!(volumes(env), ["shared"], "rm -v keeps named volumes");
    env.ok(&["run", "--rm", "-v", "shared:/data", IMAGE, "true"]);
    assert_eq!(volumes(env), ["shared"], "run --rm keeps named volumes");
    assert_eq!(std::fs::read_to_string(data(env, "shared").join("note")).unwrap(), "w\n");
    assert_eq!(env.ok(&["volume", "rm", "shared"]), "shared\n");
    assert!(volumes(env).is_empty() && !env.root().join("volumes/shared").exists());
    assert!(!env.mounted());
}

#[test]
fn root_volume_verbs_print_what_docker_prints() {
    if !common::require_root("root_volume_verbs_print_what_docker_prints") {
        return;
    }
    let env = Env::new();
    volume_verbs(&env);
}

fn volume_verbs(env: &Env) {
    assert_eq!(env.ok(&["volume", "create", "--label", "team=db", "--label", "tier", "pgdata"]), "pgdata\n");
    let random = env.ok(&["volume", "create"]).trim().to_string();
    assert!(random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit()), "{random}");
    assert_eq!(env.ok(&["volume", "create", "pgdata"]), "pgdata\n", "creating it again gives the one there is");
    let mut names = vec!["pgdata".to_string(), random.clone()];
    names.sort();
    let table = env.ok(&["volume", "ls"]);
    let mut want = vec!["DRIVER    VOLUME NAME".to_string()];
    want.extend(names.iter().map(|n| format!("local     {n}")));
    assert_eq!(lines(&table), want);
    // Filters: a volume no container uses is dangling; names match in part; labels.
    env.ok(&["run", "--name", "user", "-v", "pgdata:/db", IMAGE, "true"]);
    assert_eq!(env.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]), format!("{random}\n"));
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "dangling=false"]), "pgdata\n");
    let formatted = env.ok(&["volume", "ls", "-f", "name=pgdata", "--format", "{{.Name}} {{.Driver}} {{.Mountpoint}}"]);
    assert_eq!(formatted, format!("pgdata local {}\n", env.root().join("volumes/pgdata/_data").display()));
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "name=gdat"]), "pgdata\n");
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "label=team=db", "-f", "label=tier"]), "pgdata\n");
    assert!(env.fails(1, &["volume", "ls", "-f", "colour=red"]).contains("invalid filter"));
    // Inspect: docker's fields.
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["volume", "inspect", "pgdata"])).unwrap();
    let v = &v.as_array().unwrap()[0];
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]);
    assert_eq!((&v["Name"], &v["Driver"], &v["Scope"]), (&"pgdata".into(), &"local".into(), &"local".into()));
    assert_eq!(v["Labels"], serde_json::json!({"team": "db", "tier": ""}));
    assert_eq!(v["Mountpoint"], data(env, "pgdata").to_str().unwrap());
    assert!(humantime::parse_rfc3339(v["CreatedAt"].as_str().unwrap()).is_ok(), "{v}");
    let formatted = env.ok(&["volume", "inspect", "-f", "{{.Name}} {{json .Labels}}", "pgdata"]);
    assert_eq!(formatted, "pgdata {\"team\":\"db\",\"tier\":\"\"}\n");
    assert_eq!(env.fails(1, &["volume", "inspect", "nope"]), "strata: No such volume: nope\n");
    // rm: in use refused (with -f too), missing named, -f quiet about missing ones.
    assert!(env.fails(1, &["volume", "rm", "-f", "pgdata"]).contains("volume is in use"));
    assert_eq!(env.fails(1, &["volume", "rm", "nope"]), "strata: No such volume: nope\n");
    assert_eq!(env.ok(&["volume", "rm", "-f", "nope"]), "");
    assert!(env.fails(1, &["volume", "create", "-d", "nfs", "x1"]).contains("not supported"));
    assert!(env.fails(1, &["volume", "create", "-o", "bogus=1", "x1"]).contains("invalid option key"));
    // prune: asks first (the end of the input is no); anonymous volumes only without -a.
    env.ok(&["run", "--name", "anon", "-v", "/data", IMAGE, "true"]);
    env.ok(&["rm", "anon"]);
    let anon = anonymous(env).into_iter().find(|n| *n != random).unwrap();
    let asked = env.ok(&["volume", "prune"]);
    assert_eq!(
        asked,
        "WARNING! This will remove anonymous local volumes not used by at least one container.\n\
         Are you sure you want to continue? [y/N] \n"
    );
    assert_eq!(volumes(env).len(), 3);
    let out = env.ok(&["volume", "prune", "-f"]);
    let out = lines(&out);
    assert_eq!(out[..3], ["Deleted Volumes:", anon.as_str(), ""], "{out:?}");
    assert!(out[3].starts_with("Total reclaimed space: 1.") && out[3].ends_with("MB"), "{out:?}");
    assert_eq!(volumes(env), names, "named ones and the one in use stay");
    let mut child = env.cmd(&["volume", "prune", "-a"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"y\n").unwrap();
    }
    let out = finish(child, LIMIT);
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("all local volumes") && out.contains(&format!("Deleted Volumes:\n{random}\n\n")), "{out}");
    assert_eq!(volumes(env), ["pgdata"], "in use by the stopped container");
    env.ok(&["rm", "user"]);
    assert_eq!(env.ok(&["volume", "prune", "-f"]), "Total reclaimed space: 0B\n");
    assert_eq!(env.ok(&["volume", "prune", "-af"]), "Deleted Volumes:\npgdata\n\nTotal reclaimed space: 0B\n");
}

// ---------------------------------------------------------------------------------------------
// Anonymous volumes and the image's content

#[test]
fn root_a_new_volume_is_filled_once_with_the_image_s_content_and_owners() {
    if !common::require_root("root_a_new_volume_is_filled_once_with_the_image_s_content_and_owners") {
        return;
    }
    let env = Env::new();
    // -v /data: an anonymous volume with exactly what the image has there.
    env.ok(&["run", "--name", "fill", "-v", "/data", IMAGE, "true"]);
    let anon = anonymous(&env);
    assert_eq!(anon.len(), 1);
    assert_eq!(tree(&data(&env, &anon[0])), image_tree(&env, "/data"));
    let d = data(&env, &anon[0]);
    let ino = |p: &str| std::fs::metadata(d.join(p)).unwrap().ino();
    assert_eq!(ino("hard-src.txt"), ino("hardlink-to-src"), "hard links stay links");
    let x = Command::new("getfattr").args(["--only-values", "-n", "user.fixture"]).arg(d.join("xattr-file")).output();
    assert_eq!(x.expect("getfattr (attr) is needed").stdout, b"hello-xattr");
    // Owners: the image's /home/user is 1000:1000, on the host and inside.
    let out = env.sh(&["-v", "home:/home"], "stat -c '%u:%g %a' /home/user /home/user/owned.txt");
    assert_eq!(lines(&out), ["1000:1000 755", "1000:1000 640"]);
    let md = std::fs::metadata(data(&env, "home").join("user/owned.txt")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, 0o640));
    // Once: emptied, it stays empty; nocopy leaves a new volume empty.
    env.sh(&["-v", "home:/home"], "rm -rf /home/user");
    assert_eq!(env.sh(&["-v", "home:/home"], "ls -A /home | wc -l"), "0\n");
    assert_eq!(env.sh(&["-v", "nc:/data:nocopy"], "ls -A /data | wc -l"), "0\n");
    assert_eq!(env.sh(&["--mount", "src=nc2,dst=/data,volume-nocopy"], "ls -A /data | wc -l"), "0\n");
    // A symlink of the image is followed inside the rootfs only (link-dir -> ../etc).
    let out = env.sh(&["-v", "ln:/data/link-dir"], "ls /data/link-dir/passwd");
    assert_eq!(out, "/data/link-dir/passwd\n");
    assert!(data(&env, "ln").join("passwd").is_file(), "filled from the image's /etc");
    // run --rm removes the anonymous volume, rm without -v keeps it.
    env.ok(&["run", "--rm", "-v", "/data", "--mount", "dst=/home", IMAGE, "true"]);
    assert_eq!(anonymous(&env), anon);
    env.ok(&["rm", "fill"]);
    assert_eq!(anonymous(&env), anon, "rm without -v keeps anonymous volumes (dangling)");
    assert!(!env.mounted());
}

#[test]
fn root_an_image_volume_becomes_an_anonymous_volume() {
    if !common::require_root("root_an_image_volume_becomes_an_anonymous_volume") {
        return;
    }
    let env = Env::new();
    image_volume(&env);
}

fn image_volume(env: &Env) {
    env.ok(&["run", "--name", "base", IMAGE, "true"]);
    env.ok(&["commit", "-c", "VOLUME /data", "base", "withvol:1"]);
    env.ok(&["rm", "base"]);
    let script = "grep -c ' /data ' /proc/mounts; cat /data/keep.txt; echo new > /data/new";
    let out = env.ok(&["run", "--name", "v", "withvol:1", "sh", "-c", script]);
    assert_eq!(out, "1\nkeep\nmore\n", "a mount, filled from the image");
    let anon = anonymous(env);
    assert_eq!(anon.len(), 1);
    let mounts = mounts_of(env, "v");
    assert_eq!(mounts.len(), 1);
    assert_eq!((&mounts[0]["Type"], &mounts[0]["Destination"]), (&"volume".into(), &"/data".into()));
    assert_eq!(mounts[0]["Name"], anon[0].as_str());
    assert!(!env.dir_of("v").join("upper/data/new").exists(), "written to the volume, not the container");
    assert_eq!(std::fs::read_to_string(data(env, &anon[0]).join("new")).unwrap(), "new\n");
    env.ok(&["rm", "-v", "v"]);
    assert!(anonymous(env).is_empty(), "rm -v removes it");
    // A -v at the same path takes the image volume's place.
    assert_eq!(env.sh(&["-v", "mine:/data"], "cat /data/keep.txt"), "keep\nmore\n");
    assert_eq!(volumes(env), ["mine"]);
    env.ok(&["run", "--rm", "withvol:1", "true"]);
    assert_eq!(volumes(env), ["mine"], "run --rm removes the anonymous one");
    assert!(!env.mounted());
}

// ---------------------------------------------------------------------------------------------
// tmpfs, --volumes-from, read-only, inspect

#[test]
fn root_tmpfs_volumes_from_and_read_only_mounts() {
    if !common::require_root("root_tmpfs_volumes_from_and_read_only_mounts") {
        return;
    }
    let env = Env::new();
    tmpfs_volumes_from_read_only(&env);
}

fn tmpfs_volumes_from_read_only(env: &Env) {
    let script = "grep -E ' /(t|m) ' /proc/mounts | cut -d' ' -f2-4; stat -c %a /m; \
                  cp /bin/busybox /t/ && /t/busybox true || echo noexec";
    let out = env.sh(&["--tmpfs", "/t:size=1m", "--mount", "type=tmpfs,dst=/m,tmpfs-mode=1770"], script);
    let l = lines(&out);
    let opts = |l: &str| l.split(' ').nth(2).unwrap().split(',').map(str::to_string).collect::<Vec<_>>();
    assert!(l[0].starts_with("/m tmpfs ") && l[1].starts_with("/t tmpfs "), "{out}");
    for o in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(opts(l[0]).contains(&o.to_string()) && opts(l[1]).contains(&o.to_string()), "{out}");
    }
    assert!(opts(l[1]).contains(&"size=1024k".to_string()), "{out}");
    assert_eq!(l[2..], ["1770", "noexec"]);
    assert_eq!(env.sh(&["--tmpfs", "/t:exec"], "cp /bin/busybox /t/ && /t/busybox echo ran"), "ran\n");
    // --volumes-from: the same volumes and binds at the same places; :ro makes them read-only.
    let host = env.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::os::unix::fs::chown(&host, env.as_user, env.as_user).unwrap();
    let bind = format!("{}:/h", host.display());
    env.ok(&["run", "--name", "src", "-v", "sv:/s", "-v", &bind, "--tmpfs", "/t", IMAGE, "sh", "-c", "echo s > /s/f"]);
    let out = env.sh(
        &["--volumes-from", "src"],
        "cat /s/f; echo h > /h/f; test -e /t || echo no /t; grep -c ' /t ' /proc/mounts || true",
    );
    assert_eq!(lines(&out), ["s", "no /t", "0"], "tmpfs is not shared");
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "h\n");
    let out = env.run(&["run", "--rm", "--volumes-from", "src:ro", IMAGE, "sh", "-c", "cat /s/f; echo x > /s/g"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    // A volume with driver options mounts what they say: a tmpfs, a host directory.
    env.ok(&["volume", "create", "--opt", "type=tmpfs", "--opt", "o=size=2m", "tv"]);
    let device = format!("device={}", host.display());
    env.ok(&["volume", "create", "-o", "type=none", "-o", "o=bind", "-o", &device, "hv"]);
    let out = env.sh(&["-v", "tv:/tv", "-v", "hv:/hv"], "grep ' /tv ' /proc/mounts | cut -d' ' -f3; cat /hv/f");
    assert_eq!(lines(&out), ["tmpfs", "h"]);
    assert_eq!(env.ok(&["volume", "rm", "tv", "hv"]), "tv\nhv\n");
    assert!(host.join("f").exists(), "a bound device is the user's, not the volume's");
    // :ro and readonly.
    for flags in [&["-v", "sv:/s:ro"][..], &["--mount", "type=volume,src=sv,dst=/s,readonly"]] {
        let out = env.run(&[&["run", "--rm"][..], flags, &[IMAGE, "sh", "-c", "cat /s/f; touch /s/x"]].concat());
        assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(1), "s\n"), "{flags:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{flags:?}");
    }
    // inspect shows docker's Mounts.
    let m = mounts_of(env, "src");
    let by = |t: &str| m.iter().find(|x| x["Destination"] == t).unwrap().clone();
    let want_volume = serde_json::json!({"Type": "volume", "Name": "sv", "Source": data(env, "sv"), "Destination": "/s",
        "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""});
    assert_eq!(by("/s"), want_volume);
    let want_bind = serde_json::json!({"Type": "bind", "Source": host, "Destination": "/h", "Mode": "", "RW": true,
        "Propagation": "rprivate"});
    assert_eq!(by("/h"), want_bind);
    let want_tmpfs = serde_json::json!({"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": true,
        "Propagation": ""});
    assert_eq!(by("/t"), want_tmpfs);
    let raw = env.ok(&["inspect", "src"]);
    let at = |k: &str| raw.find(k).unwrap();
    assert!(
        at("\"Type\"") < at("\"Name\": \"sv\"") && at("\"Name\": \"sv\"") < at("\"Propagation\""),
        "docker's order"
    );
    assert_eq!(env.ok(&["inspect", "-f", "{{.Name}} {{.State.Status}}", "src"]), "/src exited\n");
    // Flag errors are one line, before anything is made.
    let before = volumes(env);
    let err = env.fails(125, &["run", "--rm", "-v", "a1:/x", "--mount", "dst=/x", IMAGE, "true"]);
    assert_eq!(err, "strata: Duplicate mount point: /x\n");
    assert!(env.fails(125, &["run", "--rm", "--mount", "type=nfs,dst=/x", IMAGE, "true"]).contains("invalid --mount"));
    assert!(env.fails(125, &["run", "--rm", "--tmpfs", "/x:suid", IMAGE, "true"]).contains("invalid --tmpfs"));
    assert!(env.fails(125, &["run", "--rm", "--volumes-from", "nope", IMAGE, "true"]).contains("No such container"));
    assert_eq!(volumes(env), before, "nothing made by failed runs");
    env.ok(&["rm", "-v", "src"]);
    assert!(!env.mounted());
}

// ---------------------------------------------------------------------------------------------
// Rootless

#[test]
fn root_rootless_named_volumes_and_the_volume_verbs() {
    if !common::require_root("root_rootless_named_volumes_and_the_volume_verbs") {
        return;
    }
    let env = as_user(65534);
    named_volume_outlives_its_containers(&env);
    volume_verbs(&env);
    let md = std::fs::metadata(env.root().join("volumes")).unwrap();
    assert_eq!(md.uid(), 65534, "the user's own store");
}

#[test]
fn root_rootless_image_volumes_tmpfs_volumes_from_and_read_only() {
    if !common::require_root("root_rootless_image_volumes_tmpfs_volumes_from_and_read_only") {
        return;
    }
    let env = as_user(65534);
    image_volume(&env);
    tmpfs_volumes_from_read_only(&env);
    // Filled as the caller: root inside is the caller outside.
    env.ok(&["run", "--name", "f", "-v", "/data", IMAGE, "true"]);
    let anon = anonymous(&env);
    let md = std::fs::metadata(data(&env, &anon[0]).join("keep.txt")).unwrap();
    assert_eq!(md.uid(), 65534);
    env.ok(&["rm", "-v", "f"]);
    assert!(anonymous(&env).is_empty());
}

#[test]
fn root_rootless_volumes_get_the_image_s_owners_with_subordinate_ids() {
    if !common::require_root("root_rootless_volumes_get_the_image_s_owners_with_subordinate_ids") {
        return;
    }
    let env = as_user(65534);
    let stat = "stat -c %u:%g:%a /home/user /home/user/owned.txt; wc -c < /home/user/owned.txt";
    let out = env.with_subordinate_ids(&format!(
        "eval \"$S run --name anon -v /home {IMAGE} sh -c '{stat}'\" && \
         eval \"$S run --rm -v named:/home -u user {IMAGE} sh -c 'echo mine > /home/user/made'\""
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&text), ["1000:1000:755", "1000:1000:640", "14"]);
    // Uid 1000 inside is 300999 on the host; the volume itself belongs to the caller.
    let anon = anonymous(&env);
    let owner = |p: PathBuf| std::fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
    assert_eq!(owner(data(&env, &anon[0]).join("user/owned.txt")), (300999, 300999));
    assert_eq!(owner(data(&env, "named").join("user/made")), (300999, 300999));
    assert_eq!(owner(data(&env, "named")), (300999, 300999), "the image's /home is 1000:1000 too");
    // What those ids wrote goes with the volumes, which the caller alone could not remove.
    let out = env.with_subordinate_ids("eval \"$S rm -v anon\" && eval \"$S volume rm named\"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(volumes(&env).is_empty());
    let left = std::fs::read_dir(env.root().join("volumes")).unwrap().flatten();
    assert_eq!(left.filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count(), 0);
}
