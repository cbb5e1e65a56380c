//! TCP_CHECK: healthy when a TCP connection opens within connect_timeout.

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use super::Outcome;

pub fn check(target: SocketAddrV4, timeout: Duration) -> Outcome {
    match TcpStream::connect_timeout(&SocketAddr::V4(target), timeout) {
        Ok(_) => Outcome::up(format!("TCP_CHECK connected to {target}")),
        Err(e) => Outcome::down(format!("TCP_CHECK connect to {target}: {e}")),
    }
}
