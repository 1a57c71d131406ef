//! The `trusttime` binary: a thin entry point; everything lives in the library.
fn main() -> std::process::ExitCode {
    trusttime::cli::main()
}
