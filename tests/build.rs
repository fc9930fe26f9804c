//! Integration tests of `strata build` on the busybox fixture image, each on its own store.

mod common;

use std::fs;

use common::container::Env;

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
        ("FROM nosuch-image\n", "Step 1/1 (Dockerfile line 1) FROM"),
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
