//! AFL++ harness of the `layer` fuzz target (see `src/targets.rs`).

fn main() {
    afl::fuzz!(|data: &[u8]| strata_fuzz::targets::run("layer", data));
}
