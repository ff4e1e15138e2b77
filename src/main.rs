//! The `xcauth` command: parse the configuration, set up logging, hand over
//! to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    xcauth::run::main_with_args(std::env::args_os())
}
