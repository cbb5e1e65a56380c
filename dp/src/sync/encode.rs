//! Packing connections into sync messages, the way a kernel master fills its sync
//! buffers: entries appended back to back on 4-byte boundaries until the next one would
//! pass `sync_maxlen`, then the message goes out and a new one starts.

use super::msg::{conn, header, SyncMessage, PE_DATA_MAXLEN, PE_NAME_MAXLEN, SEQ_DATA_LEN, SYNPROXY_WIN_LEN};
use super::repr::{EmitError, SyncConn};

/// The largest entry we can emit: fixed part, sequence option, window shifts, 255
/// bytes of PE data and a 16-byte PE name, each option with its 2-byte TLV header.
pub const MAX_ENTRY_LEN: usize =
    conn::V4_LEN + (2 + SEQ_DATA_LEN) + (2 + SYNPROXY_WIN_LEN) + (2 + PE_DATA_MAXLEN) + (2 + PE_NAME_MAXLEN);
/// The smallest message limit the encoder accepts: room for one largest entry, so the
/// limit holds for every message (the kernel instead sends an oversized message).
pub const MIN_SYNC_MAXLEN: usize = header::LEN + MAX_ENTRY_LEN;
/// The size field is 16 bits.
pub const MAX_SYNC_MAXLEN: usize = u16::MAX as usize;
/// The count field is 8 bits.
const MAX_CONNS: u8 = u8::MAX;

/// Builds messages in one reusable buffer. Allocates once, in `new`.
#[derive(Debug, Clone)]
pub struct SyncEncoder {
    buf: Vec<u8>,
    syncid: u8,
    maxlen: usize,
    nr_conns: u8,
}

impl SyncEncoder {
    /// `sync_maxlen` as from `super::sync_maxlen`; raised to `MIN_SYNC_MAXLEN` and
    /// capped at 65535 so that every message respects it.
    pub fn new(syncid: u8, sync_maxlen: usize) -> Self {
        let maxlen = sync_maxlen.clamp(MIN_SYNC_MAXLEN, MAX_SYNC_MAXLEN);
        let mut e = SyncEncoder {
            buf: Vec::with_capacity(maxlen),
            syncid,
            maxlen,
            nr_conns: 0,
        };
        e.reset();
        e
    }

    /// The limit in force after clamping.
    pub fn maxlen(&self) -> usize {
        self.maxlen
    }

    /// Entries in the message being built.
    pub fn pending(&self) -> u8 {
        self.nr_conns
    }

    /// Bytes of the message being built (its header included).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the message being built holds no entry.
    pub fn is_empty(&self) -> bool {
        self.nr_conns == 0
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(header::LEN, 0);
        SyncMessage::new_unchecked(&mut self.buf[..]).init_v1(self.syncid);
        self.nr_conns = 0;
    }

    /// Appends one entry. If it does not fit in the current message (by length or by
    /// count), that message is handed to `send` first and a new one begins.
    pub fn push(&mut self, conn: &SyncConn<'_>, mut send: impl FnMut(&[u8])) -> Result<(), EmitError> {
        // Refuse before flushing, so a bad entry does not cut a message short.
        conn.check_emit()?;
        let len = conn.buffer_len();
        let pad = if self.nr_conns == 0 {
            0
        } else {
            (4 - self.buf.len() % 4) % 4
        };
        if self.nr_conns == MAX_CONNS || self.buf.len() + pad + len > self.maxlen {
            self.flush(&mut send);
        }
        // The header is 8 bytes, so a fresh message needs no padding before its first entry.
        let pad = if self.nr_conns == 0 { 0 } else { pad };
        let start = self.buf.len() + pad;
        self.buf.resize(start + len, 0);
        if let Err(e) = conn.emit(&mut self.buf[start..]) {
            // Unreachable after `check_emit` and the resize; leave the message whole.
            self.buf.truncate(start - pad);
            return Err(e);
        }
        self.nr_conns += 1;
        let size = self.buf.len() as u16; // <= maxlen <= 65535
        let mut m = SyncMessage::new_unchecked(&mut self.buf[..]);
        m.set_nr_conns(self.nr_conns);
        m.set_size(size);
        Ok(())
    }

    /// Hands the current message to `send` if it holds any entry, and starts a new one.
    pub fn flush(&mut self, mut send: impl FnMut(&[u8])) {
        if self.nr_conns > 0 {
            send(&self.buf);
        }
        self.reset();
    }

    /// Packs all `conns` and flushes the last message.
    pub fn encode_all<'c, 'p: 'c>(
        &mut self,
        conns: impl IntoIterator<Item = &'c SyncConn<'p>>,
        mut send: impl FnMut(&[u8]),
    ) -> Result<(), EmitError> {
        for c in conns {
            self.push(c, &mut send)?;
        }
        self.flush(&mut send);
        Ok(())
    }
}
