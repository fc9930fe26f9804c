//! AFL++ harness of the `oci_json` fuzz target (see `src/targets.rs`).

fn main() {
    afl::fuzz!(|data: &[u8]| strata_fuzz::targets::run("oci_json", data));
}
