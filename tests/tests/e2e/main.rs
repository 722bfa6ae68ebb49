//! Tier 3, end to end: every runbook path on a real kind cluster. One cluster serves the whole
//! binary (a new cluster costs about a minute); each test works in its own namespace, with its
//! own PostgreSQL and Secrets, and deletes it afterwards.
#[path = "../support/mod.rs"]
mod support;

mod fixture;

mod diagnose;
mod hand_changes;
mod progressive;
mod secrets;
mod signed;
mod standard;
mod up;
mod workflows;
