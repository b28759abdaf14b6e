use std::process::ExitCode;

fn main() -> ExitCode {
    netanom::cli::main()
}
