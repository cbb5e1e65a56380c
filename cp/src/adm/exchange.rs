//! The requests that take more than one message: listings a page at a time
//! and restores staged in chunks, so a table of any size (up to the model's
//! 65,536 services and 65,536 real servers per service) lists, saves and
//! restores although one message must fit the control ring. rvsadm and
//! rvs-cp both go through here.

use rvs_proto::command::{
    Command, ConnInfo, IpvsError, ListCursor, Reply, ServiceInfo, CONNS_PAGE, RESTORE_CHUNK,
};

use super::CtlTransport;

/// Listings restarted this many times when the table keeps changing under
/// them, before giving up with `IpvsError::TableChanged`.
pub const LIST_ATTEMPTS: usize = 5;

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The data plane could not be reached (the transport's error).
    Unreachable(anyhow::Error),
    /// The data plane refused: ipvsadm's error.
    Refused(IpvsError),
    /// A reply that does not answer the request.
    Unexpected(Reply),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Unreachable(e) => write!(f, "cannot reach the data plane: {e:#}"),
            ExchangeError::Refused(e) => write!(f, "{e}"),
            ExchangeError::Unexpected(r) => write!(f, "unexpected reply from the data plane: {r:?}"),
        }
    }
}

/// One request; a refusal as an error.
pub fn ask(t: &mut dyn CtlTransport, cmd: &Command) -> Result<Reply, ExchangeError> {
    match t.request(cmd) {
        Ok(Reply::Error(e)) => Err(ExchangeError::Refused(e)),
        Ok(r) => Ok(r),
        Err(e) => Err(ExchangeError::Unreachable(e)),
    }
}

/// Every service with its real servers and counters, all of one table
/// generation: a listing the table changed under is started again.
pub fn list_services(t: &mut dyn CtlTransport) -> Result<Vec<ServiceInfo>, ExchangeError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match list_once(t) {
            Err(ExchangeError::Refused(IpvsError::TableChanged)) if attempt < LIST_ATTEMPTS => continue,
            other => return other,
        }
    }
}

fn list_once(t: &mut dyn CtlTransport) -> Result<Vec<ServiceInfo>, ExchangeError> {
    let mut out: Vec<ServiceInfo> = Vec::new();
    let mut generation = None;
    let mut from = ListCursor::default();
    loop {
        let cmd = Command::ListPage { generation, from };
        let (gen, services, next) = match ask(t, &cmd)? {
            Reply::ServicesPage {
                generation,
                services,
                next,
            } => (generation, services, next),
            r => return Err(ExchangeError::Unexpected(r)),
        };
        generation = Some(gen);
        let mut page = services.into_iter();
        if from.dest > 0 {
            // The page resumes the last service: its real servers continue.
            if let (Some(first), Some(last)) = (page.next(), out.last_mut()) {
                last.dests.extend(first.dests);
            }
        }
        out.extend(page);
        match next {
            // A cursor that does not move would loop forever.
            Some(n) if n != from => from = n,
            Some(n) => {
                return Err(ExchangeError::Unexpected(Reply::Error(IpvsError::Unsupported(
                    format!("listing page did not advance past {n:?}"),
                ))))
            }
            None => return Ok(out),
        }
    }
}

/// Every connection, a page at a time, of one listing.
pub fn list_conns(t: &mut dyn CtlTransport) -> Result<Vec<ConnInfo>, ExchangeError> {
    let mut listing = 0;
    let mut conns: Vec<ConnInfo> = Vec::new();
    loop {
        let cmd = Command::ListConnsPage {
            listing,
            offset: conns.len() as u32,
            limit: CONNS_PAGE,
        };
        let (id, total, more) = match ask(t, &cmd)? {
            Reply::ConnsPage {
                listing,
                total,
                conns,
            } => (listing, total, conns),
            r => return Err(ExchangeError::Unexpected(r)),
        };
        if more.is_empty() && conns.len() < total as usize {
            // A page that does not advance would loop forever.
            return Err(ExchangeError::Unexpected(Reply::ConnsPage {
                listing: id,
                total,
                conns: more,
            }));
        }
        listing = id;
        conns.extend(more);
        if conns.len() >= total as usize {
            return Ok(conns);
        }
    }
}

/// Applies `cmds` as one transaction, all or nothing, whatever their number:
/// staged in chunks that each fit a message, then committed. On any failure
/// the staging is abandoned (the data plane also drops it when this tool
/// dies mid-way and goes quiet). A refused command comes back as
/// `IpvsError::Restore` with its index in `cmds`.
pub fn restore(t: &mut dyn CtlTransport, cmds: &[Command]) -> Result<(), ExchangeError> {
    let restore = match ask(t, &Command::RestoreBegin)? {
        Reply::RestoreStaged { restore } => restore,
        r => return Err(ExchangeError::Unexpected(r)),
    };
    let staged = (|| {
        for chunk in cmds.chunks(RESTORE_CHUNK) {
            let step = Command::RestoreChunk {
                restore,
                commands: chunk.to_vec(),
            };
            match ask(t, &step)? {
                Reply::Ok => {}
                r => return Err(ExchangeError::Unexpected(r)),
            }
        }
        match ask(t, &Command::RestoreCommit { restore })? {
            Reply::Ok => Ok(()),
            r => Err(ExchangeError::Unexpected(r)),
        }
    })();
    if let Err(ExchangeError::Unreachable(_) | ExchangeError::Unexpected(_)) = &staged {
        // Best effort: a refused step has already dropped the staging.
        let _ = t.request(&Command::RestoreAbort { restore });
    }
    staged
}
