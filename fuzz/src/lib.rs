//! cargo-fuzz targets for `dst` (see `docs/corpus.md`, "Fuzzing"). The target bodies live in
//! `targets.rs`, which `tests/fuzz_smoke.rs` also runs on stable Rust.

pub mod targets;
