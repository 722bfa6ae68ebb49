//! The `/health/db` check: a real round trip to PostgreSQL.
//!
//! One connection is kept and reused; when it breaks (the server restarted, the network
//! dropped) the next check reconnects, so a recovered database shows as connected again.
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// How long one check may take before the database counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Database {
    url: Option<String>,
    client: Mutex<Option<Client>>,
}

impl Database {
    pub fn new(url: Option<String>) -> Database {
        Database { url, client: Mutex::new(None) }
    }

    /// `Ok` when `SELECT 1` answered; otherwise why not (never the URL: it holds a password).
    pub async fn check(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Err("DATABASE_URL is not set".to_owned());
        };
        match tokio::time::timeout(CHECK_TIMEOUT, self.round_trip(url)).await {
            Ok(result) => result,
            Err(_) => {
                // A hung connection is as good as a broken one: drop it, reconnect next time.
                *self.client.lock().await = None;
                Err(format!("no answer from the database within {CHECK_TIMEOUT:?}"))
            }
        }
    }

    async fn round_trip(&self, url: &str) -> Result<(), String> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(|client| client.is_closed()) {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(describe)?;
            // The connection object does the I/O; it ends (and the client closes) when it breaks.
            tokio::spawn(connection);
            *slot = Some(client);
        }
        let client = slot.as_ref().expect("connected above");
        if let Err(err) = client.simple_query("SELECT 1").await {
            *slot = None;
            return Err(describe(err));
        }
        Ok(())
    }
}

/// tokio-postgres errors name the cause without echoing the connection string.
fn describe(err: tokio_postgres::Error) -> String {
    match std::error::Error::source(&err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}
