//! Command line: argv -> [`Invocation`].

use std::ffi::OsString;
use std::process::ExitCode;

pub(crate) fn main(_args: Vec<OsString>) -> ExitCode {
    ExitCode::from(crate::exit::RUNTIME)
}
