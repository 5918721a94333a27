//! Wakes readers of the event log when new events may have been committed.
//!
//! Writers `NOTIFY` in the transaction that appends events (delivered on commit). One listener
//! connection per process turns notifications into a counter that any number of readers
//! (WatchTicketEvents streams, relays) wait on, so an idle stream costs no queries. Readers still
//! poll now and then: an event can be held back behind an unrelated transaction that was running
//! when it committed (see `events::read_after`), and such a transaction sends no notification.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The notification channel writers signal on.
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

    /// Listens for notifications until the task is aborted, reconnecting after failures. Every
    /// (re)connection bumps the feed, since notifications sent meanwhile were lost.
    pub fn listen(self: &Arc<Self>, pool: PgPool) -> JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listen_once(&feed, &pool).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        tracing::warn!(%error, "event notifications lost; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
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
