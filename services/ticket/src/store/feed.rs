//! Wakes readers of the event log when new events may have been committed.
//!
//! The sequencer `NOTIFY`s in each pass that publishes events (delivered on commit), and bumps
//! its own process's feed. One listener connection per process turns every replica's
//! notifications into a counter that any number of readers (WatchTicketEvents streams, relays)
//! wait on, so an idle stream costs no queries. Readers still poll now and then, in case a
//! notification was lost.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// The notification channel the sequencer signals on.
pub const CHANNEL: &str = "tierline_ticket_events";

/// A counter bumped whenever new events may be readable.
#[derive(Debug)]
pub struct EventFeed {
    tx: watch::Sender<u64>,
}

impl EventFeed {
    /// A feed nobody signals yet; [`EventFeed::listen`] connects it to PostgreSQL.
    pub fn new() -> Arc<Self> {
        let (tx, _) = watch::channel(0);
        Arc::new(EventFeed { tx })
    }

    /// Wakes every reader.
    pub fn bump(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every bump after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Listens for notifications until dropped, reconnecting after failures. Every
    /// (re)connection bumps the feed, since notifications sent meanwhile were lost.
    pub async fn listen_forever(self: Arc<Self>, pool: PgPool) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen_once(&self, &pool).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(%error, "event notifications lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

async fn listen_once(feed: &EventFeed, pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    feed.bump();
    loop {
        // `None` means the connection dropped and notifications may have been missed; the next
        // call reconnects. Either way readers must look.
        let _notification = listener.try_recv().await?;
        feed.bump();
    }
}
