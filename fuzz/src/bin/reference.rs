//! AFL++ harness of the `reference` fuzz target (see `src/targets.rs`).

fn main() {
    afl::fuzz!(|data: &[u8]| strata_fuzz::targets::run("reference", data));
}
