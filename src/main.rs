//! `adps`: maps `app::run`'s result to an exit code and prints the error chain.

use std::process::ExitCode;

fn main() -> ExitCode {
    match adps::app::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", adps::app::describe(&err));
            ExitCode::from(adps::app::EXIT_ERROR)
        }
    }
}
