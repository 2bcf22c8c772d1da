//! The `env` binary; see the library's documentation for the architecture.

fn main() -> std::process::ExitCode {
    envkit::cli::main()
}
