//! Configuration, read once from the environment (the chart sets every variable).
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::faults::Faults;

/// Secrets here are never printed: `Debug` shows only whether each one is set.
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// `file:///path`, a plain path, or an `http://` registry URL (MLflow artifact style).
    pub model_uri: String,
    /// `0` (or unset): reload only on `POST /admin/reload`.
    pub auto_refresh: Option<Duration>,
    /// The deployed version (the image tag), shown by `/version`, metrics and logs.
    pub app_version: String,
    pub admin_token: Option<String>,
    pub database_url: Option<String>,
    pub registry_credentials: RegistryCredentials,
    pub faults: Faults,
}

/// How to authenticate to the model registry, from MLflow's own variable names.
#[derive(Default)]
pub enum RegistryCredentials {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("model_uri", &self.model_uri)
            .field("auto_refresh", &self.auto_refresh)
            .field("app_version", &self.app_version)
            .field("admin_token_set", &self.admin_token.is_some())
            .field("database_url_set", &self.database_url.is_some())
            .field("faults", &self.faults)
            .finish()
    }
}

impl Config {
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// Reads through `lookup`, so tests can configure a server without touching the process
    /// environment (which the test harness shares between threads).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let parse = |key: &str, default: &str| -> Result<String> { Ok(lookup(key).unwrap_or_else(|| default.to_owned())) };
        let port: u16 = parse("PORT", "8000")?.parse().context("PORT must be a port number")?;
        let metrics_port: u16 = parse("METRICS_PORT", "9090")?.parse().context("METRICS_PORT must be a port number")?;
        let refresh: u64 =
            parse("MODEL_AUTO_REFRESH_SECONDS", "0")?.parse().context("MODEL_AUTO_REFRESH_SECONDS must be a whole number of seconds")?;
        let registry_credentials =
            match (lookup("MLFLOW_TRACKING_USERNAME"), lookup("MLFLOW_TRACKING_PASSWORD"), lookup("MLFLOW_TRACKING_TOKEN")) {
                (Some(username), Some(password), _) => RegistryCredentials::Basic { username, password },
                (_, _, Some(token)) => RegistryCredentials::Bearer(token),
                _ => RegistryCredentials::None,
            };
        let flag = |key: &str| -> Result<bool> {
            match lookup(key).as_deref() {
                None | Some("0") | Some("false") => Ok(false),
                Some("1") | Some("true") => Ok(true),
                Some(other) => anyhow::bail!("{key} must be true or false, not {other:?}"),
            }
        };
        let error_rate: f64 = parse("FAULT_ERROR_RATE", "0")?.parse().context("FAULT_ERROR_RATE must be a number from 0 to 1")?;
        let bind = lookup("BIND_ADDRESS").unwrap_or_else(|| "0.0.0.0".to_owned());
        Ok(Config {
            listen: format!("{bind}:{port}").parse().context("BIND_ADDRESS must be an IP address")?,
            metrics_listen: format!("{bind}:{metrics_port}").parse().context("BIND_ADDRESS must be an IP address")?,
            model_uri: parse("MODEL_URI", "/models/model.json")?,
            auto_refresh: (refresh > 0).then(|| Duration::from_secs(refresh)),
            app_version: parse("APP_VERSION", env!("CARGO_PKG_VERSION"))?,
            admin_token: lookup("ADMIN_API_TOKEN"),
            database_url: lookup("DATABASE_URL"),
            registry_credentials,
            faults: Faults::new(error_rate, flag("FAULT_NEVER_READY")?, flag("FAULT_CRASH_ON_START")?)
                .with_liveness_memory_and_latency(
                    flag("FAULT_UNHEALTHY")?,
                    parse("FAULT_MEMORY_MIB", "0")?.parse().context("FAULT_MEMORY_MIB must be a whole number of MiB")?,
                    parse("FAULT_LATENCY_MS", "0")?.parse().context("FAULT_LATENCY_MS must be a whole number of milliseconds")?,
                )
                .with_cpu(parse("FAULT_CPU_MS", "0")?.parse().context("FAULT_CPU_MS must be a whole number of milliseconds")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen.port(), 8000);
        assert_eq!(config.metrics_listen.port(), 9090);
        assert!(config.auto_refresh.is_none());
        assert!(!config.faults.any());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = config(&[("ADMIN_API_TOKEN", "s3cret-token"), ("DATABASE_URL", "postgres://u:pw-xyz@db/x")]).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-token") && !shown.contains("pw-xyz"), "{shown}");
        assert!(shown.contains("admin_token_set: true"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("MODEL_AUTO_REFRESH_SECONDS", "soon")]).unwrap_err();
        assert!(format!("{err:#}").contains("MODEL_AUTO_REFRESH_SECONDS"));
        let err = config(&[("FAULT_NEVER_READY", "maybe")]).unwrap_err();
        assert!(format!("{err:#}").contains("FAULT_NEVER_READY"));
    }
}
