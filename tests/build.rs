//! Integration tests of `strata build` on the busybox fixture image, each on its own store.

mod common;

use std::fs;

use common::container::Env;
use common::mounts_under;

fn build(env: &Env, ctx: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.run(&args)
}

#[test]
fn root_seed_dockerfile_builds_runs_and_caches() {
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(ctx.join("dir")).unwrap();
    fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    fs::write(ctx.join("skip.log"), "x").unwrap();
    fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM oci-multi\nMAINTAINER a <a@b>\nENV MYPATH=/usr/local\nWORKDIR $MYPATH\n\
         RUN echo built > /built.txt\nEXPOSE 80\nCMD echo one\nCMD [\"cat\", \"/opt/hello.txt\"]\n\
         COPY *.txt /opt/\nVOLUME /data\n",
    )
    .unwrap();
    let out = build(&env, &ctx, &["-t", "seed:1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Step 10/10 : VOLUME /data") && text.contains("Successfully tagged seed:1"), "{text}");
    let run = env.run(&["run", "--rm", "--network", "none", "seed:1"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");
    let inspect = String::from_utf8_lossy(&env.run(&["inspect", "seed:1"]).stdout).to_string();
    assert!(
        inspect.contains("\"WorkingDir\": \"/usr/local\"")
            && inspect.contains("80/tcp")
            && inspect.contains("\"/data\"")
    );
    let again = build(&env, &ctx, &["-t", "seed:1"]);
    let text2 = String::from_utf8_lossy(&again.stdout).to_string();
    assert_eq!(text2.matches("Using cache").count(), 9, "{text2}");
    fs::write(ctx.join("hello.txt"), "changed\n").unwrap();
    let third = String::from_utf8_lossy(&build(&env, &ctx, &[]).stdout).to_string();
    assert_eq!(third.matches("Using cache").count(), 7, "{third}");
}

#[test]
fn bad_input_names_step_and_line() {
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    for (df, want) in [
        ("FROM oci-multi\nFOO bar\n", "Step 2/2 (Dockerfile line 2) FOO: unknown instruction"),
        ("FROM oci-multi\nRUN --mount=type=cache ls\n", "RUN --mount is not supported"),
        ("FROM oci-multi\nCOPY ../x /\n", "outside the build context"),
        ("FROM 127.0.0.1:9/nosuch-image\n", "Step 1/1 (Dockerfile line 1) FROM: pulling 127.0.0.1:9/nosuch-image"),
    ] {
        fs::write(ctx.join("Dockerfile"), df).unwrap();
        let out = build(&env, &ctx, &["-t", "bad:1"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && err.contains(want) && err.lines().count() == 1, "{df}: {err}");
    }
    assert!(!env.run(&["inspect", "bad:1"]).status.success());
}

/// Builds `dockerfile` in a fresh context dir `name` under the env; asserts success; the output.
fn build_ok(env: &Env, name: &str, dockerfile: &str, extra: &[&str]) -> String {
    let ctx = env.dir.path().join(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = build(env, &ctx, extra);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// `strata run --rm IMAGE sh -c SCRIPT`'s stdout.
fn run_sh(env: &Env, image: &str, script: &str) -> String {
    let out = env.run(&["run", "--rm", "--network", "none", image, "sh", "-c", script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

const MULTI_STAGE: &str = "FROM oci-multi AS base\n\
    RUN mkdir -p /w/sub && echo keep > /w/keep && echo gone > /w/gone && echo s > /w/sub/s\n\
    RUN rm /w/gone && rm -r /w/sub && mkdir /w/sub && echo new > /w/sub/n\n\
    FROM oci-multi AS unused\n\
    RUN echo UNUSED-STEP-RAN\n\
    FROM oci-multi\n\
    COPY --from=base /w /w\n\
    COPY --from=0 /w/kee* /single/\n\
    COPY --from=oci-multi /bin/busybox /bb\n";

#[test]
fn root_multi_stage_copy_from_sees_the_merged_stage_and_skips_unneeded_stages() {
    let env = Env::new();
    let text = build_ok(&env, "ctx", MULTI_STAGE, &["-t", "multi:1"]);
    assert!(!text.contains("UNUSED-STEP-RAN") && !text.contains("RUN echo UNUSED"), "{text}");
    assert!(text.contains("Step 7/7 : COPY --from=oci-multi /bin/busybox /bb"), "{text}");
    let listing = run_sh(&env, "multi:1", "find /w /single | sort; cat /w/keep /w/sub/n; test -x /bb && echo bb");
    assert_eq!(listing, "/single\n/single/keep\n/w\n/w/keep\n/w/sub\n/w/sub/n\nkeep\nnew\nbb\n");
    let target = build_ok(&env, "ctx", MULTI_STAGE, &["--target", "unused", "-t", "unused:1"]);
    assert!(target.contains("UNUSED-STEP-RAN") && target.contains("Step 2/2 : RUN echo UNUSED"), "{target}");
    assert!(!target.contains("FROM oci-multi AS base") && !target.contains("COPY"), "{target}");
}

#[test]
fn root_onbuild_triggers_are_recorded_and_fire_in_a_child_build() {
    let env = Env::new();
    let parent = "FROM oci-multi\nONBUILD RUN echo triggered > /trig\nONBUILD COPY a.txt /from-child-ctx/\n";
    build_ok(&env, "parent", parent, &["-t", "parent:1"]);
    let inspect = String::from_utf8_lossy(&env.run(&["inspect", "parent:1"]).stdout).to_string();
    assert!(inspect.contains("\"OnBuild\"") && inspect.contains("RUN echo triggered > /trig"), "{inspect}");
    assert_eq!(run_sh(&env, "parent:1", "test -e /trig || echo none"), "none\n");
    let child_ctx = env.dir.path().join("child");
    fs::create_dir_all(&child_ctx).unwrap();
    fs::write(child_ctx.join("a.txt"), "from the child\n").unwrap();
    let text = build_ok(&env, "child", "FROM parent:1\nRUN cat /trig\n", &["-t", "child:1"]);
    assert!(text.contains("# Executing 2 build triggers"), "{text}");
    assert_eq!(run_sh(&env, "child:1", "cat /trig /from-child-ctx/a.txt"), "triggered\nfrom the child\n");
    let child = String::from_utf8_lossy(&env.run(&["inspect", "child:1"]).stdout).to_string();
    assert!(!child.contains("\"OnBuild\": [\n"), "{child}");
}

/// `strata build ARGS` with `stdin` as its standard input.
fn build_stdin(env: &Env, args: &[&str], stdin: fs::File) -> std::process::Output {
    let mut c = env.cmd(&[&["build"], args].concat());
    let child =
        c.stdin(stdin).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    common::container::finish(child, common::container::LIMIT)
}

#[test]
fn root_context_tar_on_stdin_and_dockerfile_on_stdin() {
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(ctx.join("sub")).unwrap();
    fs::write(ctx.join("sub/f.txt"), "in the tar\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM oci-multi\nCOPY sub /sub\n").unwrap();
    let tar = env.dir.path().join("ctx.tar");
    let st = std::process::Command::new("tar").arg("-C").arg(&ctx).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(st.success());
    let out = build_stdin(&env, &["-t", "fromtar:1", "-"], fs::File::open(&tar).unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_sh(&env, "fromtar:1", "cat /sub/f.txt"), "in the tar\n");
    let df = env.dir.path().join("other.Dockerfile");
    fs::write(&df, "FROM oci-multi\nCOPY sub/f.txt /g.txt\n").unwrap();
    let out = build_stdin(&env, &["-f", "-", "-t", "dfstdin:1", ctx.to_str().unwrap()], fs::File::open(&df).unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_sh(&env, "dfstdin:1", "cat /g.txt"), "in the tar\n");
}

#[test]
fn root_cache_ignores_mtime_follows_build_args_and_no_cache_reuses_nothing() {
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    let df = "FROM oci-multi\nCOPY a.txt /a\nRUN echo fixed > /f\nARG V=1\nRUN echo $V > /v\nENV X=1\n";
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("a.txt"), "a\n").unwrap();
    let first = build_ok(&env, "ctx", df, &["-t", "c:1"]);
    assert_eq!(first.matches("Using cache").count(), 0, "{first}");
    let f = fs::File::options().write(true).open(ctx.join("a.txt")).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    let touched = build_ok(&env, "ctx", df, &[]);
    assert_eq!(touched.matches("Using cache").count(), 5, "{touched}");
    let changed = build_ok(&env, "ctx", df, &["--build-arg", "V=2"]);
    assert_eq!(changed.matches("Using cache").count(), 3, "{changed}");
    assert!(changed.contains("Step 5/6 : RUN echo $V > /v\n ---> Running in"), "{changed}");
    assert!(first.contains("\nRemoving intermediate container "), "{first}");
    let none = build_ok(&env, "ctx", df, &["--no-cache", "-t", "c:2"]);
    assert_eq!(none.matches("Using cache").count(), 0, "{none}");
    assert_eq!(none.matches("Running in").count(), 2, "{none}");
    assert_eq!(run_sh(&env, "c:2", "cat /a /f /v"), "a\nfixed\n1\n");
}

#[test]
fn root_add_unpacks_a_local_tar_gz_copy_keeps_it_and_chown_chmod_apply() {
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let gz = flate2::write::GzEncoder::new(fs::File::create(ctx.join("app.tar.gz")).unwrap(), Default::default());
    let mut tar = tar::Builder::new(gz);
    for (path, mode, uid, data) in [("app/", 0o750, 1000, &b""[..]), ("app/run.sh", 0o741, 1000, b"echo hi\n")] {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_entry_type(if path.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular });
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(65534);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    fs::write(ctx.join("a.txt"), "a\n").unwrap();
    let df = "FROM oci-multi\nADD app.tar.gz /opt/\nCOPY app.tar.gz /copied/\n\
              COPY --chown=1234:5678 --chmod=600 a.txt /num\nCOPY --chown=user:nogroup a.txt /named\n\
              COPY --chown=nobody a.txt /user-only\n";
    build_ok(&env, "ctx", df, &["-t", "add:1"]);
    let got = run_sh(
        &env,
        "add:1",
        "cd / && stat -c '%n %u:%g %a %F' opt/app opt/app/run.sh copied/app.tar.gz num named user-only",
    );
    assert_eq!(
        got,
        "opt/app 1000:65534 750 directory\nopt/app/run.sh 1000:65534 741 regular file\n\
         copied/app.tar.gz 0:0 644 regular file\nnum 1234:5678 600 regular file\n\
         named 1000:65534 644 regular file\nuser-only 65534:65534 644 regular file\n"
    );
    fs::write(ctx.join("Dockerfile"), "FROM oci-multi\nCOPY --chown=nosuch a.txt /x\n").unwrap();
    let out = build(&env, &ctx, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"nosuch\""), "{out:?}");
}

#[test]
fn root_rootless_build_as_an_unprivileged_user() {
    if !common::require_root("root_rootless_build_as_an_unprivileged_user") {
        return;
    }
    // The build drops to uid 65534, which must be able to open /dev/fuse.
    fs::set_permissions("/dev/fuse", std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let env = Env::with_user(Some(65534));
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("a.txt"), "rootless\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM oci-multi\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n").unwrap();
    for p in [&ctx, &ctx.join("a.txt"), &ctx.join("Dockerfile")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let out = build(&env, &ctx, &["--network", "none", "-t", "rl:1"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let run = env.run(&["run", "--rm", "--network", "none", "rl:1", "cat", "/b.txt"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "rootless\n", "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn root_step_images_show_only_with_all_and_prune_leaves_the_cache_a_miss() {
    let env = Env::new();
    build_ok(&env, "ctx", "FROM oci-multi\nRUN echo x > /x\nENV A=1\n", &["-t", "steps:1"]);
    let list = |args: &[&str]| String::from_utf8_lossy(&env.run(args).stdout).lines().count();
    assert_eq!(list(&["images"]), 3, "header, oci-multi, steps:1");
    assert_eq!(list(&["images", "-a"]), 4, "and the RUN step's image");
    env.run(&["rmi", "steps:1"]);
    let pruned = env.run(&["prune"]);
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let again = build_ok(&env, "ctx", "FROM oci-multi\nRUN echo x > /x\nENV A=1\n", &["-t", "steps:1"]);
    assert!(again.contains("Running in"), "{again}");
}

/// `strata images` names (REPOSITORY:TAG) of a store.
fn image_names(env: &Env) -> Vec<String> {
    let out = env.ok(&["images"]);
    out.lines().skip(1).map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(":")).collect()
}

#[test]
fn root_from_pulls_what_the_store_lacks_and_pull_always_pulls_again() {
    if !common::registry::require_registry() {
        return;
    }
    use common::registry::{Registry, RegistryOptions};
    let reg = Registry::start(RegistryOptions::new());
    let src = Env::new();
    let name = format!("{}/fx/multi:1", reg.host());
    src.ok(&["tag", "oci-multi", &name]);
    src.ok(&["push", &name]);
    // A store without the fixture: the build pulls its base.
    let env = Env::new();
    env.ok(&["rmi", "oci-multi"]);
    assert_eq!(image_names(&env), Vec::<String>::new());
    let df = format!("FROM {name}\nRUN cat /etc/fx-release > /release\n");
    let first = build_ok(&env, "ctx", &df, &["--network", "none", "-t", "p:1"]);
    assert!(first.starts_with(&format!("Step 1/2 : FROM {name}\n1: Pulling from fx/multi\n")), "{first}");
    assert_eq!(first.matches(": Pull complete\n").count(), 5, "{first}");
    assert!(first.contains(&format!("Status: Downloaded newer image for {name}\n ---> ")), "{first}");
    let mut names = image_names(&env);
    names.sort();
    assert_eq!(names, vec![name.clone(), "p:1".to_string()]);
    assert!(run_sh(&env, "p:1", "cat /release").contains("ID=fx"));
    // The store has it now: no pull, every step cached.
    let second = build_ok(&env, "ctx", &df, &["--network", "none"]);
    assert!(!second.contains("Pulling from") && second.matches("Using cache").count() == 1, "{second}");
    // The tag moves in the registry: only --pull sees it, and the steps after FROM run again.
    build_ok(&src, "v2", "FROM oci-multi\nRUN echo v2 > /v2\n", &["--network", "none", "-t", &name]);
    src.ok(&["push", &name]);
    let stale = build_ok(&env, "ctx", &df, &["--network", "none", "-t", "p:2"]);
    assert!(!stale.contains("Pulling from"), "{stale}");
    assert_eq!(run_sh(&env, "p:2", "test -e /v2 || echo old"), "old\n");
    let pulled = build_ok(&env, "ctx", &df, &["--pull", "--network", "none", "-t", "p:3"]);
    assert_eq!(pulled.matches(": Already exists\n").count(), 5, "{pulled}");
    assert!(pulled.contains("Status: Downloaded newer image for") && pulled.contains("Running in"), "{pulled}");
    assert_eq!(run_sh(&env, "p:3", "cat /v2 /release | head -1"), "v2\n");
    let again = build_ok(&env, "ctx", &df, &["--pull", "--network", "none"]);
    assert!(again.contains(&format!("Status: Image is up to date for {name}")), "{again}");
    assert_eq!(again.matches("Using cache").count(), 1, "{again}");
    // A name the registry does not have: one line, nothing tagged.
    let ctx = env.dir.path().join("missing");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM {}/fx/nosuch:1\nRUN true\n", reg.host())).unwrap();
    let out = build(&env, &ctx, &["-t", "missing:1"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(err.contains("Step 1/2 (Dockerfile line 1) FROM: pulling") && err.contains("fx/nosuch:1"), "{err}");
    assert!(!env.run(&["inspect", "missing:1"]).status.success());
}

// ---------------------------------------------------------------------------------------------
// The seeds built by docker's classic builder and by buildah (`podman build --layers`) too

use common::engines::{Dockerd, Podman};

/// The first seed on the busybox fixture (the package install replaced by a file written).
const SEED_1: &str = "FROM oci-multi\nMAINTAINER a <a@b>\nENV MYPATH=/usr/local\nWORKDIR $MYPATH\n\
    RUN echo built > /built.txt && mkdir -p /srv/app && chown 1000:100 /srv/app && chmod 2750 /srv/app\n\
    EXPOSE 80\nCMD echo one\nCMD [\"cat\", \"/opt/hello.txt\"]\nCOPY *.txt /opt/\nCOPY conf /etc/app/\n\
    COPY --chown=1000:100 conf/app.conf /srv/app/\nVOLUME /data\n";

/// The second seed: the JDK and tomcat tarballs are generated `.tar.gz` files.
const SEED_2: &str = "FROM oci-multi\nMAINTAINER andre <andre@example.com>\nLABEL version=1.0 app=tomcat\n\
    COPY hello.txt /usr/local/readme.txt\nADD jdk.tar.gz /usr/local/\nADD tomcat.tar.gz /usr/local/\n\
    ENV MYPATH /usr/local\nWORKDIR $MYPATH\nENV JAVA_HOME /usr/local/jdk\nENV CATALINA_HOME /usr/local/tomcat\n\
    ENV PATH $PATH:$JAVA_HOME/bin:$CATALINA_HOME/bin\n\
    RUN mkdir $CATALINA_HOME/logs && echo started > $CATALINA_HOME/logs/catalina.out && rm $JAVA_HOME/remove-me\n\
    RUN rm -r $CATALINA_HOME/webapps/examples && chmod 700 $CATALINA_HOME/conf && ln -s jdk/bin/java /usr/local/java\n\
    EXPOSE 8080 8009/udp\nSTOPSIGNAL SIGQUIT\nVOLUME [\"/usr/local/tomcat/logs\"]\nUSER 1000:1000\n\
    ENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"catalina.sh run\"]\n";

/// A gzipped tar of `entries` (path, mode, uid:gid, content or `->target` for a symlink or
/// `=>path` for a hard link; a path ending in `/` is a directory).
fn tar_gz(at: &std::path::Path, entries: &[(&str, u32, (u64, u64), &str)]) {
    let gz = flate2::write::GzEncoder::new(fs::File::create(at).unwrap(), Default::default());
    let mut tar = tar::Builder::new(gz);
    for (path, mode, (uid, gid), data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*gid);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        if let Some(target) = data.strip_prefix("->") {
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, path, target).unwrap();
        } else if let Some(target) = data.strip_prefix("=>") {
            h.set_entry_type(tar::EntryType::Link);
            tar.append_link(&mut h, path, target).unwrap();
        } else if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, path, &b""[..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// The two seeds' contexts under `dir`: (name, context dir).
fn seed_contexts(dir: &std::path::Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let (one, two) = (dir.join("seed1"), dir.join("seed2"));
    for c in [&one, &two] {
        fs::create_dir_all(c.join("conf/sub")).unwrap();
        fs::write(c.join("hello.txt"), "hello\n").unwrap();
        fs::write(c.join("notes.txt"), "notes\n").unwrap();
        fs::write(c.join("skip.log"), "x").unwrap();
        fs::write(c.join(".dockerignore"), "*.log\n").unwrap();
        fs::write(c.join("conf/app.conf"), "port=80\n").unwrap();
        fs::write(c.join("conf/sub/secret"), "s\n").unwrap();
        fs::set_permissions(c.join("conf/sub/secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::set_permissions(c.join("conf/sub"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        let _ = fs::remove_file(c.join("conf/link"));
        std::os::unix::fs::symlink("app.conf", c.join("conf/link")).unwrap();
    }
    fs::write(one.join("Dockerfile"), SEED_1).unwrap();
    fs::write(two.join("Dockerfile"), SEED_2).unwrap();
    tar_gz(
        &two.join("jdk.tar.gz"),
        &[
            ("jdk/", 0o755, (10, 20), ""),
            ("jdk/bin/", 0o755, (10, 20), ""),
            ("jdk/bin/java", 0o755, (10, 20), "#!/bin/sh\necho java\n"),
            ("jdk/bin/javac", 0o777, (10, 20), "->java"),
            ("jdk/lib/", 0o755, (10, 20), ""),
            ("jdk/lib/rt.jar", 0o644, (10, 20), "classes"),
            ("jdk/lib/rt-link.jar", 0o644, (10, 20), "=>jdk/lib/rt.jar"),
            ("jdk/bin/suid", 0o4755, (0, 0), "setuid"),
            ("jdk/remove-me", 0o600, (0, 0), "x"),
        ],
    );
    tar_gz(
        &two.join("tomcat.tar.gz"),
        &[
            ("tomcat/", 0o750, (1000, 1000), ""),
            ("tomcat/bin/", 0o755, (1000, 1000), ""),
            ("tomcat/bin/catalina.sh", 0o750, (1000, 1000), "#!/bin/sh\necho tomcat\n"),
            ("tomcat/conf/", 0o755, (1000, 1000), ""),
            ("tomcat/conf/server.xml", 0o640, (1000, 1000), "<Server/>\n"),
            ("tomcat/webapps/", 0o755, (1000, 1000), ""),
            ("tomcat/webapps/examples/", 0o755, (1000, 1000), ""),
            ("tomcat/webapps/examples/index.html", 0o644, (1000, 1000), "<html/>\n"),
            ("tomcat/webapps/ROOT/", 0o755, (1000, 1000), ""),
        ],
    );
    vec![("seed1", one), ("seed2", two)]
}

/// The config fields every builder must agree on, from an `inspect` answer's `Config`, with
/// empty values as absent and buildah's own version label left out; `Env` sorted when
/// `env_as_set` (buildah moves a variable an ENV sets again to the end; docker and Strata
/// replace it in place).
fn config_fields(config: &serde_json::Value, env_as_set: bool) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in ["Env", "WorkingDir", "Cmd", "Entrypoint", "ExposedPorts", "Volumes", "User", "Labels", "StopSignal"] {
        let mut v = config.get(k).cloned().unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("io.buildah.version");
        }
        if let (true, Some(list)) = (env_as_set && k == "Env", v.as_array_mut()) {
            list.sort_by_key(|e| e.to_string());
        }
        let empty = match &v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(m) => m.is_empty(),
            _ => false,
        };
        if !empty {
            out.insert(k.to_string(), v);
        }
    }
    serde_json::Value::Object(out)
}

/// Paths a container engine adds to every container it exports (mount targets, markers): not
/// part of an image.
fn runtime_path(p: &str) -> bool {
    [".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", "run/.containerenv"].contains(&p)
        || ["dev", "proc", "sys"].iter().any(|d| p == *d || p.starts_with(&format!("{d}/")))
}

/// The image's rootfs as `ENGINE create` + `ENGINE export` give it, unpacked under `into`.
fn exported(engine: &dyn Fn(&[&str]) -> std::process::Output, image: &str, into: &std::path::Path) -> common::Snapshot {
    let ok = |args: &[&str]| {
        let out = engine(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let id = ok(&["create", image]);
    let tar = into.with_extension("tar");
    ok(&["export", "-o", tar.to_str().unwrap(), &id]);
    ok(&["rm", &id]);
    fs::create_dir_all(into).unwrap();
    let st = std::process::Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success());
    without_runtime_paths(common::snapshot(into))
}

fn without_runtime_paths(mut s: common::Snapshot) -> common::Snapshot {
    s.nodes.retain(|p, _| !runtime_path(p));
    s.same_inode = s.same_inode.into_iter().map(|g| g.into_iter().filter(|p| !runtime_path(p)).collect()).collect();
    s.same_inode.retain(|g: &Vec<String>| g.len() > 1);
    s
}

/// Strata's image rootfs, read through a read-only image mount.
fn strata_rootfs(env: &Env, image: &str, mnt: &std::path::Path) -> common::Snapshot {
    fs::create_dir_all(mnt).unwrap();
    env.ok(&["mount", image, mnt.to_str().unwrap()]);
    let snap = common::snapshot(mnt);
    env.ok(&["umount", mnt.to_str().unwrap()]);
    without_runtime_paths(snap)
}

#[test]
fn root_seeds_built_by_docker_and_buildah_give_strata_s_rootfs_and_config() {
    if !common::require_root("root_seeds_built_by_docker_and_buildah_give_strata_s_rootfs_and_config")
        || !common::store::require_tool("podman")
    {
        return;
    }
    let env = Env::new();
    let work = env.dir.path();
    let archive = work.join("base.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "oci-multi"]);
    let podman = Podman::new();
    let out = podman.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "podman load: {}", String::from_utf8_lossy(&out.stderr));
    let docker = Dockerd::start();
    if let Some(d) = &docker {
        let out = d.run(&["load", "-i", archive.to_str().unwrap()]);
        assert!(out.status.success(), "docker load: {}", String::from_utf8_lossy(&out.stderr));
    }
    for (seed, ctx) in seed_contexts(work) {
        let tag = format!("{seed}:interop");
        let ctx_s = ctx.to_str().unwrap();
        env.ok(&["build", "--network", "none", "-t", &tag, ctx_s]);
        let ours = strata_rootfs(&env, &tag, &work.join(format!("{seed}-strata")));
        let inspect = |out: std::process::Output, env_as_set: bool| -> serde_json::Value {
            assert!(out.status.success(), "inspect: {}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            config_fields(&v[0]["Config"], env_as_set)
        };
        let our_config = |env_as_set| inspect(env.run(&["inspect", &tag]), env_as_set);
        let out = podman.run(&["build", "--layers", "--network", "none", "-t", &tag, ctx_s]);
        assert!(out.status.success(), "podman build {seed}: {}", String::from_utf8_lossy(&out.stderr));
        let theirs = exported(&|a| podman.run(a), &tag, &work.join(format!("{seed}-buildah")));
        assert_eq!(ours.diff(&theirs, true), Vec::<String>::new(), "{seed}: strata vs buildah");
        let theirs = inspect(podman.run(&["image", "inspect", &tag]), true);
        assert_eq!(our_config(true), theirs, "{seed}: strata vs buildah");
        if let Some(d) = &docker {
            let out = d.run_with(&[("DOCKER_BUILDKIT", "0")], &["build", "--network", "none", "-t", &tag, ctx_s]);
            assert!(out.status.success(), "docker build {seed}: {}", String::from_utf8_lossy(&out.stderr));
            let theirs = exported(&|a| d.run(a), &tag, &work.join(format!("{seed}-docker")));
            // docker's tar code carries only `security.capability`: the fixture's `user.*`
            // xattr is gone from its copy of the base image (buildah above compares them).
            let mut ours = ours.clone();
            ours.nodes.values_mut().for_each(|n| n.xattrs.retain(|k, _| !k.starts_with("user.")));
            assert_eq!(ours.diff(&theirs, true), Vec::<String>::new(), "{seed}: strata vs docker");
            let theirs = inspect(d.run(&["image", "inspect", &tag]), false);
            assert_eq!(our_config(false), theirs, "{seed}: strata vs docker");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ADD of remote files, heredocs

/// A tiny HTTP/1.1 server on loopback: GET of a path in `files` answers its content with a
/// fixed `Last-Modified`, anything else 404. Counts the requests; stops on drop.
struct Http {
    port: u16,
    files: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The `Last-Modified` every file is served with, and its Unix time.
const LAST_MODIFIED: (&str, u64) = ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777);

impl Http {
    fn start() -> Http {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let http = Http {
            port: listener.local_addr().unwrap().port(),
            files: Default::default(),
            hits: Default::default(),
            stop: Default::default(),
        };
        let (files, hits, stop) = (http.files.clone(), http.hits.clone(), http.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                    head.push(byte[0]);
                }
                hits.fetch_add(1, Ordering::Relaxed);
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
                let _ = match files.lock().unwrap().get(&path) {
                    Some(body) => write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {}\r\nConnection: close\r\n\r\n",
                        body.len(),
                        LAST_MODIFIED.0
                    )
                    .and_then(|_| conn.write_all(body)),
                    None => write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        http
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, path: &str, body: &[u8]) {
        self.files.lock().unwrap().insert(path.to_string(), body.to_vec());
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn root_add_fetches_a_url_keeps_it_packed_dates_it_and_caches_by_content() {
    let env = Env::new();
    let http = Http::start();
    let gz = env.dir.path().join("app.tar.gz");
    tar_gz(&gz, &[("app/", 0o755, (0, 0), ""), ("app/x", 0o644, (0, 0), "x")]);
    http.serve("/files/app.tar.gz", &fs::read(&gz).unwrap());
    http.serve("/files/conf.txt", b"conf 1\n");
    let df = format!(
        "FROM oci-multi\nADD {} /opt/\nADD --chown=1000:100 --chmod=640 {} /etc/renamed\nADD {} /srv/\n",
        http.url("/files/app.tar.gz"),
        http.url("/files/conf.txt?v=1"),
        http.url("/files/conf.txt")
    );
    build_ok(&env, "ctx", &df, &["-t", "url:1"]);
    let got = run_sh(&env, "url:1", "cd / && stat -c '%n %u:%g %a %F %Y' opt/app.tar.gz etc/renamed srv/conf.txt");
    let t = LAST_MODIFIED.1;
    assert_eq!(
        got,
        format!(
            "opt/app.tar.gz 0:0 600 regular file {t}\netc/renamed 1000:100 640 regular file {t}\n\
             srv/conf.txt 0:0 600 regular file {t}\n"
        )
    );
    assert_eq!(run_sh(&env, "url:1", "cat /srv/conf.txt"), "conf 1\n");
    // Fetched again at each build (as docker does); the same content is a cache hit.
    let hits = http.hits();
    let again = build_ok(&env, "ctx", &df, &["-t", "url:1"]);
    assert_eq!((again.matches("Using cache").count(), http.hits() - hits), (3, 3), "{again}");
    http.serve("/files/conf.txt", b"conf 2\n");
    let changed = build_ok(&env, "ctx", &df, &["-t", "url:2"]);
    assert_eq!(changed.matches("Using cache").count(), 1, "{changed}");
    assert_eq!(run_sh(&env, "url:2", "cat /srv/conf.txt /etc/renamed"), "conf 2\nconf 2\n");
    // A download that fails: one line naming the URL, nothing tagged.
    let ctx = env.dir.path().join("bad");
    fs::create_dir_all(&ctx).unwrap();
    for (url, why) in [(http.url("/files/nosuch"), "404 Not Found"), ("http://127.0.0.1:9/x".to_string(), "")] {
        fs::write(ctx.join("Dockerfile"), format!("FROM oci-multi\nADD {url} /x\n")).unwrap();
        let out = build(&env, &ctx, &["-t", "bad:1"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && err.lines().count() == 1, "{err}");
        assert!(err.contains(&format!("Step 2/2 (Dockerfile line 2) ADD: {url}: {why}")), "{err}");
    }
    assert!(!env.run(&["inspect", "bad:1"]).status.success());
    // ADD --checksum: a cached step downloads nothing; a different content or a local source
    // is one line and no image.
    use sha2::Digest as _;
    let sum = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"conf 2\n")));
    let df = format!("FROM oci-multi\nADD --checksum={sum} {} /c\n", http.url("/files/conf.txt"));
    build_ok(&env, "sum", &df, &["-t", "sum:1"]);
    assert_eq!(run_sh(&env, "sum:1", "cat /c"), "conf 2\n");
    let hits = http.hits();
    let again = build_ok(&env, "sum", &df, &["-t", "sum:1"]);
    assert_eq!((again.matches("Using cache").count(), http.hits() - hits), (1, 0), "{again}");
    let wrong = format!("sha256:{}", "0".repeat(64));
    for (df, why) in [
        (
            format!("FROM oci-multi\nADD --checksum={wrong} {} /c\n", http.url("/files/conf.txt")),
            format!("{}: content is {sum}, --checksum says {wrong}", http.url("/files/conf.txt")),
        ),
        (format!("FROM oci-multi\nADD --checksum={sum} Dockerfile /c\n"), "--checksum is for URL sources only".into()),
        (
            format!("FROM oci-multi\nADD --checksum=md5:1 {} /c\n", http.url("/files/conf.txt")),
            "--checksum=md5:1: sha256:HEX".into(),
        ),
    ] {
        fs::write(ctx.join("Dockerfile"), df).unwrap();
        let out = build(&env, &ctx, &["-t", "bad:2"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && err.lines().count() == 1, "{err}");
        assert!(err.contains(&format!("Step 2/2 (Dockerfile line 2) ADD: {why}")), "{err}");
    }
    assert!(!env.run(&["inspect", "bad:2"]).status.success());
}

#[test]
fn root_copy_and_run_heredocs() {
    let env = Env::new();
    let df = "FROM oci-multi\nARG WHO=world\nCOPY <<EOF /hello.txt\nhello $WHO \"quoted\" '$WHO' \\$WHO\nEOF\n\
              COPY --chmod=755 <<-\"A\" <<B /dir/\n\t#!/bin/sh\n\techo $NOT_EXPANDED\n\tA\nb $WHO\nB\n\
              RUN <<EOF\necho from heredoc > /run.txt\ncat /hello.txt >> /run.txt\nEOF\n\
              RUN <<-EOF\n\t#!/bin/sh\n\techo \"$0 $WHO\" > /script.txt\n\tEOF\n";
    build_ok(&env, "ctx", df, &["-t", "here:1"]);
    assert_eq!(run_sh(&env, "here:1", "cat /script.txt"), "/dev/pipes/EOF world\n");
    let got = run_sh(&env, "here:1", "cat /run.txt /dir/A /dir/B; stat -c '%n %a %u' /hello.txt /dir/A /dir/B");
    assert_eq!(
        got,
        "from heredoc\nhello world \"quoted\" 'world' $WHO\n#!/bin/sh\necho $NOT_EXPANDED\nb world\n\
         /hello.txt 644 0\n/dir/A 755 0\n/dir/B 755 0\n"
    );
    let again = build_ok(&env, "ctx", df, &[]);
    assert_eq!(again.matches("Using cache").count(), 5, "{again}");
    let other = build_ok(&env, "ctx", df, &["--build-arg", "WHO=you", "-t", "here:2"]);
    assert_eq!(other.matches("Using cache").count(), 1, "{other}");
    assert_eq!(run_sh(&env, "here:2", "cat /dir/B"), "b you\n");
    fs::write(env.dir.path().join("ctx/Dockerfile"), "FROM oci-multi\nCOPY <<EOF /x\nno end\n").unwrap();
    let out = build(&env, &env.dir.path().join("ctx"), &[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("line 2: unterminated heredoc \"EOF\""), "{err}");
}

/// Whether a process runs `sleep SECS`.
fn sleeping(secs: &str) -> bool {
    let want = format!("sleep\0{secs}\0");
    let mut procs = fs::read_dir("/proc").unwrap().flatten();
    procs.any(|p| fs::read(p.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}

/// A RUN step lives as long as its build: killing `strata build` while a step runs kills the
/// step's command, unmounts its rootfs and removes its container (as BuildKit cancels a step
/// whose client went away), instead of leaving it to run on in the background.
#[test]
fn root_a_killed_build_kills_its_running_step_and_leaves_no_container() {
    use std::time::{Duration, Instant};
    let env = Env::new();
    let ctx = env.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM oci-multi\nRUN touch /started && sleep 3607\n").unwrap();
    let root = env.dir.path().join("root");
    let mut build = env.spawn(&["build", "-q", "--no-cache", ctx.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !mounts_under(&root).iter().any(|m| m.join("started").exists()) {
        assert!(build.try_wait().unwrap().is_none(), "the build ended before its step ran");
        assert!(Instant::now() < deadline, "the RUN step did not start in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // `/started` shows before the shell has started `sleep`: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleeping("3607") {
        assert!(Instant::now() < deadline, "the step's command is not running");
        std::thread::sleep(Duration::from_millis(20));
    }
    build.kill().unwrap();
    build.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (!mounts_under(&root).is_empty() || sleeping("3607")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!sleeping("3607"), "the step's command outlived the killed build");
    assert_eq!(mounts_under(&root), Vec::<std::path::PathBuf>::new(), "the step's rootfs is still mounted");
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.ok(&["ps", "-a"]).lines().count() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(env.ok(&["ps", "-a"]).lines().count(), 1, "the step's container is left: {}", env.ok(&["ps", "-a"]));
    assert!(env.run(&["check"]).status.success(), "the store is not whole after the kill");
}
