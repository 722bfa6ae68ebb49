//! How a long wait shows that it is alive. On a terminal: one live line (a spinner, the time
//! waited and where things stand), with every change of state kept as a line above it. Not on a
//! terminal (CI logs, pipes): plain lines only, a change when it happens and a heartbeat line
//! while nothing changes, since a log has no line to redraw.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Spinner {
    live: Option<ProgressBar>,
    started: Instant,
    heartbeat: Duration,
    last_line: Instant,
}

impl Spinner {
    /// A spinner on a terminal; plain lines, one at least every `heartbeat`, elsewhere.
    pub fn start(heartbeat: Duration) -> Spinner {
        let live = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("  {spinner} [{elapsed:>4}] {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Spinner { live, started: Instant::now(), heartbeat, last_line: Instant::now() }
    }

    /// A change of state, kept as a line (`  [  12s] <status>`): above the live line, or printed.
    pub fn say(&mut self, status: &str) {
        let line = format!("  [{:>4.0}s] {status}", self.started.elapsed().as_secs_f64());
        match &self.live {
            Some(bar) => {
                bar.println(line);
                bar.set_message(status.to_owned());
            }
            None => println!("{line}"),
        }
        self.last_line = Instant::now();
    }

    /// Where things stand, unchanged: the live line shows it at once; without a terminal it is
    /// printed only when a heartbeat is due.
    pub fn still(&mut self, status: &str) {
        match &self.live {
            Some(bar) => bar.set_message(status.to_owned()),
            None if self.last_line.elapsed() >= self.heartbeat => self.say(status),
            None => {}
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.live {
            bar.finish_and_clear();
        }
    }
}
