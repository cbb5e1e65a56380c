//! The IPVS TCP connection states and their transition tables, after the
//! kernel's ip_vs_proto_tcp.c (the `tcp_states` tables, not the secure_tcp
//! `tcp_states_dos` variant).
//!
//! The director sees only one side or both sides of a connection, never the
//! endpoints' real TCP state, so these states are IPVS's own approximation:
//! they only decide timeouts and the active/inactive counters of the real
//! server.

use std::fmt;

use crate::wire::tcp::TcpFlags;

/// The flag bits by their short names, for the tables' tests.
#[cfg(test)]
pub(crate) mod flags {
    use super::TcpFlags;
    pub const FIN: u8 = TcpFlags::FIN;
    pub const SYN: u8 = TcpFlags::SYN;
    pub const RST: u8 = TcpFlags::RST;
    pub const ACK: u8 = TcpFlags::ACK;
}

/// IPVS's TCP states, in the kernel's order (`IP_VS_TCP_S_*`), so the
/// discriminant indexes the transition and timeout tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
}

impl TcpState {
    pub const COUNT: usize = 11;

    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The word `ipvsadm -Lc` prints in its state column.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    pub fn from_name(s: &str) -> Option<TcpState> {
        TcpState::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }

    pub fn from_u8(v: u8) -> Option<TcpState> {
        TcpState::ALL.get(v as usize).copied()
    }

    /// Whether a connection in this state counts in the real server's active
    /// connections. Classic IPVS (and ipvsadm's ActiveConn column as most
    /// operators know it) counts only ESTABLISHED; everything else is inactive.
    #[inline]
    pub fn is_active(self) -> bool {
        self == TcpState::Established
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The event a segment represents, by the kernel's precedence: RST over SYN
/// over FIN over ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpEvent {
    Syn = 0,
    Fin = 1,
    Ack = 2,
    Rst = 3,
}

impl TcpEvent {
    /// `None` for a segment with none of RST, SYN, FIN, ACK (e.g. a bare PSH
    /// or a null scan): such a segment leaves the state as it is.
    #[inline]
    pub fn from_flags(tcp_flags: u8) -> Option<TcpEvent> {
        if tcp_flags & TcpFlags::RST != 0 {
            Some(TcpEvent::Rst)
        } else if tcp_flags & TcpFlags::SYN != 0 {
            Some(TcpEvent::Syn)
        } else if tcp_flags & TcpFlags::FIN != 0 {
            Some(TcpEvent::Fin)
        } else if tcp_flags & TcpFlags::ACK != 0 {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

/// Which of the kernel's three tables applies to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateTable {
    /// Client to real server, on a connection whose replies we also see (NAT).
    Input,
    /// Real server to client (NAT replies).
    Output,
    /// Client to real server when replies bypass the director (DR, TUN).
    InputOnly,
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Row = [TcpState; TcpState::COUNT];

// Rows are indexed by `TcpEvent`, columns by the current state in the order
//   NONE ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN SYNACK
// The values are the kernel's (current mainline, where an ACK on NONE means
// ESTABLISHED so a connection picked up mid-stream is counted as such).
#[rustfmt::skip]
const INPUT: [Row; 4] = [
    /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];

#[rustfmt::skip]
const OUTPUT: [Row; 4] = [
    /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];

#[rustfmt::skip]
const INPUT_ONLY: [Row; 4] = [
    /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

impl StateTable {
    #[inline]
    fn rows(self) -> &'static [Row; 4] {
        match self {
            StateTable::Input => &INPUT,
            StateTable::Output => &OUTPUT,
            StateTable::InputOnly => &INPUT_ONLY,
        }
    }
}

/// The state after a segment with `tcp_flags` seen through `table`.
///
/// Deviation from the kernel, on purpose: the kernel moves a connection to
/// CLOSE on a segment that carries none of RST/SYN/FIN/ACK; we leave the
/// state unchanged, so a stray flagless segment cannot shorten a live
/// connection to the 10 s CLOSE timeout.
#[inline]
pub fn next_state(table: StateTable, state: TcpState, tcp_flags: u8) -> TcpState {
    match TcpEvent::from_flags(tcp_flags) {
        Some(ev) => table.rows()[ev as usize][state as usize],
        None => state,
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    #[test]
    fn names_match_ipvsadm_and_round_trip() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(TcpState::from_u8(i as u8), Some(*s));
            assert_eq!(TcpState::from_name(s.name()), Some(*s));
        }
        assert_eq!(TcpState::from_u8(11), None);
    }

    #[test]
    fn event_precedence_is_rst_syn_fin_ack() {
        assert_eq!(TcpEvent::from_flags(RST | SYN | FIN | ACK), Some(TcpEvent::Rst));
        assert_eq!(TcpEvent::from_flags(SYN | FIN | ACK), Some(TcpEvent::Syn));
        assert_eq!(TcpEvent::from_flags(FIN | ACK), Some(TcpEvent::Fin));
        assert_eq!(TcpEvent::from_flags(ACK | 0x08), Some(TcpEvent::Ack));
        assert_eq!(TcpEvent::from_flags(0x08), None);
        assert_eq!(TcpEvent::from_flags(0), None);
    }

    #[test]
    fn nat_handshake_and_close() {
        use StateTable::*;
        let mut s = TcpState::None;
        s = next_state(Input, s, SYN);
        assert_eq!(s, TcpState::SynRecv);
        s = next_state(Output, s, SYN | ACK);
        assert_eq!(s, TcpState::SynRecv);
        s = next_state(Input, s, ACK);
        assert_eq!(s, TcpState::Established);
        // Client closes first.
        s = next_state(Input, s, FIN | ACK);
        assert_eq!(s, TcpState::CloseWait);
        s = next_state(Output, s, ACK);
        assert_eq!(s, TcpState::CloseWait);
        s = next_state(Output, s, FIN | ACK);
        assert_eq!(s, TcpState::TimeWait);
        s = next_state(Input, s, ACK);
        assert_eq!(s, TcpState::TimeWait);
    }

    #[test]
    fn server_closes_first() {
        use StateTable::*;
        let mut s = TcpState::Established;
        s = next_state(Output, s, FIN | ACK);
        assert_eq!(s, TcpState::FinWait);
        s = next_state(Input, s, ACK);
        assert_eq!(s, TcpState::FinWait);
        s = next_state(Input, s, FIN | ACK);
        assert_eq!(s, TcpState::TimeWait);
    }

    #[test]
    fn input_only_differs_from_input_on_fin() {
        assert_eq!(
            next_state(StateTable::Input, TcpState::Established, FIN),
            TcpState::CloseWait
        );
        assert_eq!(
            next_state(StateTable::InputOnly, TcpState::Established, FIN),
            TcpState::FinWait
        );
        assert_eq!(
            next_state(StateTable::InputOnly, TcpState::FinWait, ACK),
            TcpState::FinWait
        );
        assert_eq!(
            next_state(StateTable::InputOnly, TcpState::FinWait, FIN),
            TcpState::FinWait
        );
        assert_eq!(
            next_state(StateTable::InputOnly, TcpState::SynAck, RST),
            TcpState::Close
        );
        assert_eq!(
            next_state(StateTable::Input, TcpState::SynAck, RST),
            TcpState::SynRecv
        );
    }

    #[test]
    fn rst_closes_and_flagless_segment_changes_nothing() {
        for t in [StateTable::Input, StateTable::InputOnly, StateTable::Output] {
            assert_eq!(next_state(t, TcpState::Established, RST | ACK), TcpState::Close);
            for s in TcpState::ALL {
                assert_eq!(next_state(t, s, 0x08), s);
            }
        }
        // Kernel quirks kept: RST on SYN_RECV from the client leaves it there,
        // a server RST in TIME_WAIT keeps TIME_WAIT.
        assert_eq!(
            next_state(StateTable::Input, TcpState::SynRecv, RST),
            TcpState::SynRecv
        );
        assert_eq!(
            next_state(StateTable::Output, TcpState::TimeWait, RST),
            TcpState::TimeWait
        );
    }

    #[test]
    fn only_established_is_active() {
        let active: Vec<_> = TcpState::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [&TcpState::Established]);
    }
}
