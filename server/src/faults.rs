//! Fault injection for tests: explicit configuration, every fault off by default.
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    /// Fraction (0..=1) of `/v1/predict` requests answered with 500: a bad model in a canary.
    pub error_rate: f64,
    /// `/ready` always answers 503: a version that never becomes ready.
    pub never_ready: bool,
    /// Exit at start: a crash-looping version.
    pub crash_on_start: bool,
    /// `/health` always answers 503: a version its liveness probe restarts.
    pub unhealthy: bool,
    /// MiB allocated (and touched) at start and held: a version that needs more memory than
    /// its limit, which the kernel kills (OOMKilled), or one that costs more than stable.
    pub memory_mib: u64,
    /// Added to every prediction's time: a version that regresses latency.
    pub latency: Option<std::time::Duration>,
    /// CPU kept busy per prediction (a spin, not a sleep): a version that costs more CPU than
    /// stable for the same traffic.
    pub cpu_per_request: Option<std::time::Duration>,
    served: AtomicU64,
}

impl Faults {
    pub fn new(error_rate: f64, never_ready: bool, crash_on_start: bool) -> Faults {
        Faults {
            error_rate: error_rate.clamp(0.0, 1.0),
            never_ready,
            crash_on_start,
            unhealthy: false,
            memory_mib: 0,
            latency: None,
            cpu_per_request: None,
            served: AtomicU64::new(0),
        }
    }

    /// These faults with `/health` failing, `memory_mib` held and `latency_ms` added to every
    /// prediction.
    pub fn with_liveness_memory_and_latency(self, unhealthy: bool, memory_mib: u64, latency_ms: u64) -> Faults {
        let latency = (latency_ms > 0).then(|| std::time::Duration::from_millis(latency_ms));
        Faults { unhealthy, memory_mib, latency, ..self }
    }

    /// These faults with `cpu_ms` of CPU spent on every prediction.
    pub fn with_cpu(self, cpu_ms: u64) -> Faults {
        Faults { cpu_per_request: (cpu_ms > 0).then(|| std::time::Duration::from_millis(cpu_ms)), ..self }
    }

    pub fn any(&self) -> bool {
        self.error_rate > 0.0
            || self.never_ready
            || self.crash_on_start
            || self.unhealthy
            || self.memory_mib > 0
            || self.latency.is_some()
            || self.cpu_per_request.is_some()
    }

    /// Keeps this thread busy for `cpu_per_request` (nothing when unset).
    pub fn burn_cpu(&self) {
        if let Some(busy) = self.cpu_per_request {
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < busy {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    /// Allocates and touches `memory_mib` MiB, kept for the life of the process (a model too big
    /// for the pod's memory limit: the kernel kills the container, OOMKilled).
    pub fn hold_memory(&self) -> Vec<u8> {
        vec![1u8; (self.memory_mib as usize) * 1024 * 1024]
    }

    /// Whether this request should fail. Deterministic, not random: exactly `error_rate` of
    /// any run of requests fails, so tests can assert the rate without flakiness.
    pub fn fail_this_request(&self) -> bool {
        if self.error_rate <= 0.0 {
            return false;
        }
        let n = self.served.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.error_rate).floor() > (n * self.error_rate).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_is_exact_over_a_run() {
        let faults = Faults::new(0.5, false, false);
        let failed = (0..100).filter(|_| faults.fail_this_request()).count();
        assert_eq!(failed, 50);
        let faults = Faults::new(0.1, false, false);
        assert_eq!((0..100).filter(|_| faults.fail_this_request()).count(), 10);
    }

    #[test]
    fn a_cpu_fault_keeps_the_thread_busy_for_its_time() {
        let faults = Faults::default().with_cpu(20);
        assert!(faults.any());
        let started = std::time::Instant::now();
        faults.burn_cpu();
        assert!(started.elapsed() >= std::time::Duration::from_millis(20));
        let none = Faults::default();
        let started = std::time::Instant::now();
        none.burn_cpu();
        assert!(started.elapsed() < std::time::Duration::from_millis(20), "no fault, no spin");
    }

    #[test]
    fn no_faults_by_default() {
        let faults = Faults::default();
        assert!(!faults.any());
        assert!(!(0..100).any(|_| faults.fail_this_request()));
    }
}
