//! Strata's fuzz targets (see `targets.rs`), for the AFL++ harnesses in `src/bin/`.

pub mod targets;
