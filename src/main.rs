fn main() -> std::process::ExitCode {
    fpmctl::ExitCode::Ok.into()
}
