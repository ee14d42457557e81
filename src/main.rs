//! `adps`: the command line (`app::main` parses it, runs it and prints any error).

fn main() -> std::process::ExitCode {
    adps::app::main()
}
