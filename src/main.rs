//! The stock `rcontainer` binary: the library's command line with the built-in apps.

use std::process::ExitCode;

fn main() -> ExitCode {
    rcontainer::run()
}
