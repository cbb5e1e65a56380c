fn main() {
    eprintln!("rvs-dp: not built yet");
    std::process::exit(1);
}
