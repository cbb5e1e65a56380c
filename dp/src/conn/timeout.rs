//! Connection timeouts per state, in seconds, with the kernel's defaults and
//! `ipvsadm --set tcp tcpfin udp`.

use super::tcp::TcpState;

/// Seconds a connection lives after its last packet, by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    tcp: [u32; TcpState::COUNT],
    /// UDP has a single state in IPVS.
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut tcp = [0u32; TcpState::COUNT];
        for s in TcpState::ALL {
            tcp[s as usize] = match s {
                TcpState::None => 2,
                TcpState::Established => 900,
                TcpState::SynSent => 120,
                TcpState::SynRecv => 60,
                TcpState::FinWait => 120,
                TcpState::TimeWait => 120,
                TcpState::Close => 10,
                TcpState::CloseWait => 60,
                TcpState::LastAck => 30,
                TcpState::Listen => 120,
                TcpState::SynAck => 120,
            };
        }
        Timeouts { tcp, udp: 300 }
    }
}

impl Timeouts {
    #[inline]
    pub fn tcp(&self, state: TcpState) -> u32 {
        self.tcp[state as usize]
    }

    /// `tcp(TcpState::Established)`, at a constant index.
    #[inline]
    pub fn tcp_established(&self) -> u32 {
        self.tcp[TcpState::Established as usize]
    }

    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP
    /// timeouts; 0 leaves a value unchanged, as in ipvsadm.
    pub fn set_ipvsadm(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// What `ipvsadm -L --timeout` prints: (tcp, tcpfin, udp).
    pub fn ipvsadm_values(&self) -> (u32, u32, u32) {
        (
            self.tcp(TcpState::Established),
            self.tcp(TcpState::FinWait),
            self.udp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kernels() {
        let t = Timeouts::default();
        assert_eq!(t.ipvsadm_values(), (900, 120, 300));
        let expect = [
            (TcpState::None, 2),
            (TcpState::Established, 900),
            (TcpState::SynSent, 120),
            (TcpState::SynRecv, 60),
            (TcpState::FinWait, 120),
            (TcpState::TimeWait, 120),
            (TcpState::Close, 10),
            (TcpState::CloseWait, 60),
            (TcpState::LastAck, 30),
            (TcpState::Listen, 120),
            (TcpState::SynAck, 120),
        ];
        for (s, secs) in expect {
            assert_eq!(t.tcp(s), secs, "{s}");
        }
    }

    #[test]
    fn set_ipvsadm_zero_leaves_unchanged() {
        let mut t = Timeouts::default();
        t.set_ipvsadm(3600, 0, 0);
        assert_eq!(t.ipvsadm_values(), (3600, 120, 300));
        t.set_ipvsadm(0, 30, 0);
        assert_eq!(t.ipvsadm_values(), (3600, 30, 300));
        t.set_ipvsadm(0, 0, 45);
        assert_eq!(t.ipvsadm_values(), (3600, 30, 45));
        // Other states are untouched by --set.
        assert_eq!(t.tcp(TcpState::TimeWait), 120);
        assert_eq!(t.tcp(TcpState::SynRecv), 60);
    }
}
