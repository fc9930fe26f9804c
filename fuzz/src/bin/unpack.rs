//! AFL++ harness of the `unpack` fuzz target (see `src/targets.rs`).

fn main() {
    afl::fuzz!(|data: &[u8]| strata_fuzz::targets::run("unpack", data));
}
