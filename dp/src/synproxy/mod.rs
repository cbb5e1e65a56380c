//! SYN proxy (DPVS's `-j enable`): for a service with it, the director
//! answers SYNs itself with SYN cookies, and opens the connection to a real
//! server only for a client that completes the handshake. Spoofed SYNs then
//! create no state at all.
//!
//! - `cookie`: the SYN-ACK's ISN, which carries the client's MSS, window
//!   shift and SACK permission;
//! - `translate`: the sequence (and window) translation between the two
//!   handshakes, for the rest of the connection.
//!
//! What is carried to the real server: the client's ISN, its MSS (rounded
//! down to the cookie's table), its window shift and SACK permission.
//! Timestamps are not negotiated (the SYN-ACK offers none, so neither side
//! uses them). The RS's window is rescaled to the shift the director
//! announced. Proxying needs the RS's replies, so it applies to NAT.

pub mod cookie;
pub mod handshake;
pub mod translate;
