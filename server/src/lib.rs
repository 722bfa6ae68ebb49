//! `model-server`: the ML model service the shipshape runbooks deploy.
//!
//! Contract (what the runbooks verify): `GET /health`, `GET /ready` (once the model is loaded),
//! `GET /health/db` (a real PostgreSQL round trip), `POST /admin/reload` (guarded by
//! `X-Admin-Token`), `GET /version`, `POST /v1/predict`, and Prometheus metrics on a second port.
pub mod app;
pub mod client;
pub mod config;
pub mod db;
pub mod faults;
pub mod load;
pub mod log;
pub mod metrics;
pub mod model;

pub use app::{start, RunningServer};
pub use config::Config;
