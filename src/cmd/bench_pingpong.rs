//! `dst bench_pingpong` (not implemented yet).

use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Entry point.
pub fn main(_args: Args) -> ExitCode {
    super::bad_input("bench_pingpong is not implemented yet")
}
