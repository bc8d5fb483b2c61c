//! The `ringway` binary: see [`ringway_engine::cli`].

fn main() -> std::process::ExitCode {
    ringway_engine::cli::main()
}
