//! The `/health/db` check: a real round trip to PostgreSQL.
//!
//! One connection is kept and reused; when it breaks (the server restarted, the network
//! dropped) or stops answering (the database moved), the check reconnects at once, so the answer
//! is about the database, not about an old socket.
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// How long one check may take on a new connection before the database counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a kept connection gets before it counts as stale. A connection can outlive the
/// address it was made to: when PostgreSQL's pod is rescheduled (a node drained), its old
/// address no longer answers, nothing sends a reset, and the socket looks open. A round trip on a
/// live connection takes milliseconds.
const KEPT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Database {
    url: Option<String>,
    client: Mutex<Option<Client>>,
}

impl Database {
    pub fn new(url: Option<String>) -> Database {
        Database { url, client: Mutex::new(None) }
    }

    /// `Ok` when `SELECT 1` answered; otherwise why not (never the URL: it holds a password).
    /// The answer is about the database now: a kept connection that does not answer at once is
    /// dropped and the check made again on a new one, within its own timeout.
    pub async fn check(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Err("DATABASE_URL is not set".to_owned());
        };
        let mut slot = self.client.lock().await;
        if let Some(kept) = slot.take().filter(|client| !client.is_closed()) {
            if let Ok(Ok(_)) = tokio::time::timeout(KEPT_CONNECTION_TIMEOUT, kept.simple_query("SELECT 1")).await {
                *slot = Some(kept);
                return Ok(());
            }
        }
        match tokio::time::timeout(CHECK_TIMEOUT, connect_and_ask(url)).await {
            Ok(Ok(client)) => {
                *slot = Some(client);
                Ok(())
            }
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer from the database within {CHECK_TIMEOUT:?}")),
        }
    }
}

/// A new connection and one `SELECT 1` on it.
async fn connect_and_ask(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(describe)?;
    // The connection object does the I/O; it ends (and the client closes) when it breaks.
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map_err(describe)?;
    Ok(client)
}

/// tokio-postgres errors name the cause without echoing the connection string.
fn describe(err: tokio_postgres::Error) -> String {
    match std::error::Error::source(&err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}
