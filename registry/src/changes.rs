//! Change announcements: on PostgreSQL every new audit event is announced
//! on the `serval_changes` channel (a trigger NOTIFYs when its transaction
//! commits), so servers sharing the registry hear of a change at once
//! instead of at their next poll. SQLite has no such channel; servers
//! sharing a SQLite file rely on polling alone.

use sqlx::postgres::PgListener;

use crate::store::{Backend, redact_password};
use crate::{Registry, RegistryError, Result};

/// The channel the audit-event trigger notifies.
pub const CHANGES_CHANNEL: &str = "serval_changes";

/// A subscription to the registry's change announcements.
#[derive(Debug)]
pub struct ChangeListener {
    listener: PgListener,
}

/// What [`ChangeListener::next`] heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// An audit event with this id was committed.
    Event(u64),
    /// The connection dropped and was re-established: announcements made
    /// meanwhile are lost, so re-read the audit log.
    Reconnected,
}

impl Registry {
    /// Subscribes to change announcements, on a connection of its own;
    /// `None` on SQLite, which cannot announce.
    pub async fn listen_for_changes(&self) -> Result<Option<ChangeListener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let open_error = |source| RegistryError::Open {
            location: redact_password(&self.url),
            source,
        };
        let mut listener = PgListener::connect(&self.url).await.map_err(open_error)?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }
}

impl ChangeListener {
    /// Waits for the next announcement. After the connection drops it
    /// reconnects (answering [`Announcement::Reconnected`] once it has); an
    /// error means the server could not be reached, and the next call tries
    /// again.
    pub async fn next(&mut self) -> Result<Announcement> {
        match self.listener.try_recv().await? {
            Some(notification) => Ok(notification
                .payload()
                .parse()
                .map(Announcement::Event)
                .unwrap_or(Announcement::Reconnected)),
            None => Ok(Announcement::Reconnected),
        }
    }
}
