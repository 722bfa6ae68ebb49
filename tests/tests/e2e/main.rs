//! Tier 3, end to end: every runbook path on a real kind cluster. One cluster serves the whole
//! binary (a new cluster costs about a minute); each test works in its own namespace, with its
//! own Secrets, and deletes it afterwards. Dev namespaces check the shared cluster's one
//! PostgreSQL (fixture::shared_database_url); staging's and prod's have their own.
#[path = "../support/mod.rs"]
mod support;

mod fixture;

// libtest starts tests in the order of their names, four at a time (`cargo xtask test`), so the
// modules' names decide what starts first. Production's scenarios (`across_clusters`, about
// 5 minutes in one test) start with the binary, their releases signed before any traffic;
// signed and scanned releases (`artifacts`) build, scan and sign with the node to themselves
// (fixture::cpu_heavy), best before the traffic tests are under way; the deploy workflow (`ci_workflows`) is long and would otherwise start last
// and run alone. Within a module the longest tests' names sort first (the blue/green switch and
// rollback, about 2 minutes, started last and ended the binary alone: 388 s against 294 for the
// rest). Measured: the e2e timeline the binary prints at exit.
mod across_clusters;
mod artifacts;
mod ci_workflows;
mod diagnose;
mod hand_changes;
mod progressive;
mod secrets;
mod standard;
mod up;
