//! `strata`: parse the command line, run it, print the error chain once, exit with its status.

fn main() -> std::process::ExitCode {
    match strata::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {}", strata::cli::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
