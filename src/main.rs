fn main() {
    std::process::exit(lumierd::cli::main());
}
