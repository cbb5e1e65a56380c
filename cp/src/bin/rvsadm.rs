//! rvsadm: ipvsadm's command line for the rvs data plane.

use std::io;
use std::process::ExitCode;

use rvs_cp::adm::{run, LocalTransport};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Until the shared-memory transport lands, rvsadm talks to an in-process
    // model: every invocation starts from an empty table.
    let mut transport = LocalTransport::default();
    let code = run(
        &args,
        &mut transport,
        &mut io::stdin().lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    ExitCode::from(code.clamp(0, 255) as u8)
}
