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
