//! `-L -c`: a worker's live entries as the control protocol lists them
//! (`ConnInfo`), FULLNAT entries with their local address and port.

use std::net::SocketAddrV4;

use rvs_proto::command::ConnInfo;

use super::ConnTable;

/// Every entry of `t` not expired at `now`, in table order.
pub fn listing(t: &ConnTable, now: u32) -> Vec<ConnInfo> {
    t.iter()
        .filter(|(_, c)| !c.is_expired(now))
        .map(|(id, c)| ConnInfo {
            proto: c.proto(),
            state: c.state_name().to_string(),
            expires_s: c.remaining(now),
            cip: c.cip(),
            cport: c.cport(),
            vip: c.vip(),
            vport: c.vport(),
            rip: c.rip(),
            rport: c.rport(),
            laddr: t.fnat(id).map(|f| SocketAddrV4::new(f.laddr.lip, f.laddr.lport)),
        })
        .collect()
}
