use std::process::ExitCode;

fn main() -> ExitCode {
    captrace::app::main()
}
