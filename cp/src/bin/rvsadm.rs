//! rvsadm: ipvsadm's command line for the rvs data plane.
//!
//! Besides ipvsadm's options it takes `--ctl PATH`, the control region of the
//! rvs-dp to talk to (else `$RVS_CTL`, else `/run/rvs/rvs.ctl`).

use std::io::{self, Write};
use std::process::ExitCode;

use rvs_cp::adm::run;
use rvs_cp::transport::{resolve_ctl_path, take_ctl_arg, ShmTransport};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ctl = match take_ctl_arg(&mut args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io::stderr(), "{e}");
            return ExitCode::from(2);
        }
    };
    let mut transport = ShmTransport::new(resolve_ctl_path(ctl.as_deref(), None));
    let code = run(
        &args,
        &mut transport,
        &mut io::stdin().lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    ExitCode::from(code.clamp(0, 255) as u8)
}
