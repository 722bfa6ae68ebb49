//! SIGINT and SIGTERM while a flow runs: Ctrl-C on a terminal, GitHub's cancel and a job's
//! `timeout-minutes` (SIGINT, then SIGTERM, then a kill). Left to their default, either ends the
//! process mid-step: a deploy half-rolled, a canary left at its split, a blue/green switch with
//! both colours up. helm's atomic mode cleans up on SIGINT; so does a flow here.
//!
//! While a run holds its release, the first signal is a request: the flow stops at its next safe
//! point (the start of a step, or inside a wait or a hold, which watch for it), and the failure
//! that makes runs its undo as any failure does (a deploy rolled back, a canary aborted, a
//! blue/green switch undone), so stable serves as before. The request is delivered once: the
//! undo's own waits run to their end. A signal while that happens is said and ignored. A signal
//! with no run under way ends the process at once, as by default (exit 130 or 143).
//!
//! helm itself runs in a process group of its own (`process::read_or_explain_shielded`): a
//! terminal's Ctrl-C, which reaches the whole foreground group, does not stop a `helm upgrade`
//! halfway (which would leave the release `pending-upgrade`); the flow stops after it.
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NONE: u8 = 0;
const SIGINT_PENDING: u8 = 1;
const SIGTERM_PENDING: u8 = 2;
const SIGINT_DELIVERED: u8 = 3;
const SIGTERM_DELIVERED: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(NONE);
static RUNS: AtomicUsize = AtomicUsize::new(0);
static LISTENING: OnceLock<()> = OnceLock::new();
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How often a hold looks for a request (a signal waits at most this long to be seen).
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The failure a signal makes at a flow's next safe point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: &'static str,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted ({})", self.signal)
    }
}

impl std::error::Error for Interrupted {}

/// Called by the `xtask` binary: its runs take signals as requests. Without it (a library user,
/// such as the test binary running many flows side by side) a signal keeps its default action.
pub fn stop_flows_safely_on_signals() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// A run began: signals become requests (the listener starts with the first run).
pub fn run_began() {
    RUNS.fetch_add(1, Ordering::SeqCst);
    if ENABLED.load(Ordering::SeqCst) {
        LISTENING.get_or_init(listen);
    }
}

/// A run ended: with none under way, a signal ends the process again.
pub fn run_ended() {
    RUNS.fetch_sub(1, Ordering::SeqCst);
}

/// The signal that was delivered to this process's run, if one was.
pub fn delivered() -> Option<&'static str> {
    match STATE.load(Ordering::SeqCst) {
        SIGINT_DELIVERED => Some("SIGINT"),
        SIGTERM_DELIVERED => Some("SIGTERM"),
        _ => None,
    }
}

/// A safe point: Err once, when a signal is waiting to be delivered.
pub fn checkpoint() -> Result<(), Interrupted> {
    for (pending, delivered, signal) in [(SIGINT_PENDING, SIGINT_DELIVERED, "SIGINT"), (SIGTERM_PENDING, SIGTERM_DELIVERED, "SIGTERM")] {
        if STATE.compare_exchange(pending, delivered, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return Err(Interrupted { signal });
        }
    }
    Ok(())
}

/// Waits `how_long` (a blue/green hold, an analysis window), stopping early for a request.
pub fn pause(how_long: Duration) -> Result<(), Interrupted> {
    let until = Instant::now() + how_long;
    loop {
        checkpoint()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(LOOK_EVERY));
    }
}

/// Resolves when a request waits (for a wait's `select!`); then [`checkpoint`] takes it.
pub async fn requested() {
    loop {
        if matches!(STATE.load(Ordering::SeqCst), SIGINT_PENDING | SIGTERM_PENDING) {
            return;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// What a signal does now, from the state and whether a run is under way: said to the person,
/// and the state after it (None: end the process).
fn on_signal(state: u8, runs: usize, signal: &'static str) -> (String, Option<u8>) {
    if runs == 0 {
        return (format!("{signal}: no flow is under way; exiting"), None);
    }
    match state {
        NONE => (
            format!(
                "{signal}: stopping at the next safe point; what this run changed is undone, so that stable serves as before (another \
                 signal meanwhile is ignored)"
            ),
            Some(if signal == "SIGINT" { SIGINT_PENDING } else { SIGTERM_PENDING }),
        ),
        _ => (
            format!(
                "{signal} ignored: already stopping, and the undo finishes first (a kill -9 now would leave the release half-changed: \
                 `cargo xtask doctor` then names what to do)"
            ),
            Some(state),
        ),
    }
}

/// Listens for SIGINT and SIGTERM on a thread of its own, for the rest of the process.
fn listen() {
    let spawned = std::thread::Builder::new().name("signals".to_owned()).spawn(|| {
        #[allow(clippy::disallowed_methods)] // the signal listener's own runtime, on its own thread
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => return eprintln!("warning: cannot listen for Ctrl-C ({err}): a signal ends this flow mid-step"),
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return eprintln!("warning: cannot listen for Ctrl-C: a signal ends this flow mid-step");
            };
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                let (said, next) = on_signal(STATE.load(Ordering::SeqCst), RUNS.load(Ordering::SeqCst), name);
                eprintln!("{said}");
                match next {
                    Some(next) => STATE.store(next, Ordering::SeqCst),
                    None => std::process::exit(if name == "SIGINT" { 130 } else { 143 }),
                }
            }
        });
    });
    if let Err(err) = spawned {
        eprintln!("warning: cannot listen for Ctrl-C ({err}): a signal ends this flow mid-step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_during_a_run_is_a_request_and_later_ones_are_ignored_while_it_is_undone() {
        let (said, next) = on_signal(NONE, 1, "SIGTERM");
        assert_eq!(next, Some(SIGTERM_PENDING));
        assert!(said.contains("next safe point") && said.contains("undone"), "{said}");
        for state in [SIGINT_PENDING, SIGTERM_PENDING, SIGINT_DELIVERED, SIGTERM_DELIVERED] {
            let (said, next) = on_signal(state, 1, "SIGINT");
            assert_eq!(next, Some(state), "a second signal changes nothing");
            assert!(said.contains("ignored") && said.contains("undo finishes first"), "{said}");
        }
        let (said, next) = on_signal(NONE, 0, "SIGINT");
        assert_eq!(next, None, "with no run under way, a signal ends the process: {said}");
    }

    /// One test drives the process-wide state (tests run in parallel threads).
    #[test]
    fn a_request_is_delivered_once_at_a_safe_point_and_cuts_a_hold_short() {
        STATE.store(NONE, Ordering::SeqCst);
        assert_eq!(checkpoint(), Ok(()));
        assert_eq!(pause(Duration::from_millis(10)), Ok(()));
        STATE.store(SIGTERM_PENDING, Ordering::SeqCst);
        assert_eq!(pause(Duration::from_secs(3600)), Err(Interrupted { signal: "SIGTERM" }), "the hold ends at the request");
        assert_eq!(delivered(), Some("SIGTERM"));
        assert_eq!(checkpoint(), Ok(()), "delivered once: the undo's waits run to their end");
        assert_eq!(pause(Duration::from_millis(10)), Ok(()));
        STATE.store(NONE, Ordering::SeqCst);
    }
}
