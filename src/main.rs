fn main() -> std::process::ExitCode {
    bakery::cli::main()
}
