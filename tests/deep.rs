//! Trees deeper than `PATH_MAX` (4096 bytes) from the root, end to end: made in a container
//! (its FUSE root), then through `strata diff`, `commit` (upper dir → layer), `tree`, `explain`,
//! `save`, `load` into another store (unpack of a layer with such paths), `check`, and `run`
//! of a container reading the deepest file. Every one of them must reach the file part by part,
//! through directory fds, as no single path to it is accepted by the kernel.

mod common;

use common::container::*;

/// One directory name (200 bytes) and how many levels of it: about 8.4 KiB from the root.
const LEVELS: usize = 42;

fn part() -> String {
    "d".repeat(200)
}

/// `/far/NAME/NAME/…/file`.
fn deep_file() -> String {
    let mut p = String::from("/far");
    for _ in 0..LEVELS {
        p.push('/');
        p.push_str(&part());
    }
    p + "/file"
}

/// A shell script that goes down the tree (making it with `mkdir`), then runs `then`.
fn down(make: bool, then: &str) -> String {
    let mk = if make { "mkdir \"$n\" && " } else { "" };
    let top = if make { "mkdir /far && " } else { "" };
    format!("n={}; {top}cd /far && for i in $(seq 1 {LEVELS}); do {mk}cd -P \"$n\" || exit 1; done && {then}", part())
}

#[test]
fn root_a_tree_deeper_than_path_max_goes_through_commit_diff_explain_save_load_and_run() {
    if !common::require_root("root_a_tree_deeper_than_path_max_goes_through_commit_diff_explain_save_load_and_run") {
        return;
    }
    let path = deep_file();
    assert!(path.len() > 8000);
    let env = Env::new();
    env.ok(&["run", "--name", "c", "--network", "none", IMAGE, "sh", "-c", &down(true, "echo deep > file")]);
    // diff names every level, down to the file.
    let diff = env.ok(&["diff", "c"]);
    assert!(
        diff.lines().any(|l| l == format!("A {path}")),
        "diff misses the deep file:\n{}",
        &diff[..diff.len().min(600)]
    );
    assert_eq!(diff.lines().filter(|l| l.starts_with("A /far")).count(), LEVELS + 2, "{diff}");
    // commit: the layer holds it.
    env.ok(&["commit", "c", "deep:1"]);
    assert_eq!(env.ok(&["run", "--rm", "--network", "none", "deep:1", "sh", "-c", &down(false, "cat file")]), "deep\n");
    // explain and tree reach it by its whole path.
    let out = env.ok(&["explain", "deep:1", &path]);
    assert!(out.contains("Shown from layer"), "explain of the deep file:\n{out}");
    let tree = env.ok(&["tree", "deep:1", "/far"]);
    assert!(tree.lines().any(|l| l.ends_with(" file") || l.ends_with("file")), "tree misses the file:\n{tree}");
    // save, then load into another store: the layer with the deep path unpacks whole.
    let tar = env.dir.path().join("deep.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), "deep:1"]);
    let other = Env::new();
    other.ok(&["load", "-q", "-i", tar.to_str().unwrap()]);
    let check = other.ok(&["check"]);
    assert!(check.ends_with("0 problems\n"), "{check}");
    let out = other.ok(&["run", "--rm", "--network", "none", "deep:1", "sh", "-c", &down(false, "cat file")]);
    assert_eq!(out, "deep\n");
    // A container of it changes the deep file (a copy-up at that depth) and commits again.
    let change = down(false, "echo changed >> file");
    other.ok(&["run", "--name", "c2", "--network", "none", "deep:1", "sh", "-c", &change]);
    assert!(other.ok(&["diff", "c2"]).lines().any(|l| l == format!("C {path}")));
    other.ok(&["commit", "c2", "deep:2"]);
    let out = other.ok(&["run", "--rm", "--network", "none", "deep:2", "sh", "-c", &down(false, "cat file")]);
    assert_eq!(out, "deep\nchanged\n");
}
