//! Canary analysis: canary against stable, from the pods' own Prometheus metrics (port 9090,
//! read through the API server), over a window while traffic flows. Only application traffic
//! counts (`/v1/predict`), never the probes. Too few canary requests is inconclusive: the flow
//! pauses, it never passes on no evidence.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::k8s::pods;
use crate::k8s::proxy;

pub mod checks;
mod prometheus;
pub mod resources;
pub use prometheus::{parse_buckets_by_le, parse_instant_value, Prometheus};

/// The route whose requests are judged.
pub(crate) const ROUTE: &str = "/v1/predict";
/// The metrics port's name in the chart.
const METRICS_PORT_NAME: &str = "metrics";

/// What a canary must show to pass a step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Thresholds {
    /// Fewer canary requests than this in the window: inconclusive.
    pub min_requests: u64,
    /// Highest acceptable canary error rate (5xx / requests).
    pub max_error_rate: f64,
    /// Canary mean latency may be at most this many times stable's...
    pub max_latency_ratio: f64,
    /// ...plus this (small latencies are noisy), in seconds.
    pub latency_slack_seconds: f64,
    /// Canary memory per pod may be at most this many times stable's (resources.rs)...
    #[serde(default = "max_memory_ratio")]
    pub max_memory_ratio: f64,
    /// ...and its CPU per pod this many times.
    #[serde(default = "max_cpu_ratio")]
    pub max_cpu_ratio: f64,
}

/// `--max-memory-ratio`'s default: twice stable's working set per pod (plus 16 MiB).
pub const MAX_MEMORY_RATIO: f64 = 2.0;
/// `--max-cpu-ratio`'s default: CPU is spikier than memory over a short window.
pub const MAX_CPU_RATIO: f64 = 3.0;

/// The thresholds `canary start` judges by unless told otherwise (its flags' defaults).
impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            min_requests: 50,
            max_error_rate: 0.01,
            max_latency_ratio: 2.0,
            latency_slack_seconds: 0.05,
            max_memory_ratio: MAX_MEMORY_RATIO,
            max_cpu_ratio: MAX_CPU_RATIO,
        }
    }
}

// Canaries journaled before resources were judged read back with the defaults.
fn max_memory_ratio() -> f64 {
    MAX_MEMORY_RATIO
}
fn max_cpu_ratio() -> f64 {
    MAX_CPU_RATIO
}

/// The latency percentile a canary is judged by (Flagger's built-in check is p99 of request
/// duration; p95 is steadier on the few hundred requests of a short window).
pub const LATENCY_QUANTILE: f64 = 0.95;
/// [`LATENCY_QUANTILE`] as reports name it.
const LATENCY_QUANTILE_NAME: &str = "p95";

/// Request counts and latency of one track over the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrackSample {
    pub requests: f64,
    pub errors: f64,
    pub latency_sum: f64,
    pub latency_count: f64,
    /// The latency histogram's cumulative buckets (upper bound in seconds, count at or below),
    /// ascending, the last one +Inf. Empty when the source had none. Not journaled: JSON has no
    /// infinity (serde_json writes null and cannot read it back), and the journal keeps the
    /// percentile the verdict used, in its reasons.
    #[serde(skip)]
    pub latency_buckets: Vec<(f64, f64)>,
}

impl TrackSample {
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }

    pub fn mean_latency(&self) -> Option<f64> {
        (self.latency_count > 0.0).then(|| self.latency_sum / self.latency_count)
    }

    /// The `q` quantile of latency from the buckets, computed as Prometheus's
    /// `histogram_quantile` does: linear within the bucket the rank falls in, the highest finite
    /// bound when it falls in +Inf. None without observations.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total = self.latency_buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, count) in &self.latency_buckets {
            if count >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let in_bucket = count - below;
                return Some(if in_bucket > 0.0 { lower + (upper - lower) * (rank - below) / in_bucket } else { upper });
            }
            (lower, below) = (upper, count);
        }
        Some(lower)
    }

    fn add(&mut self, other: &TrackSample) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency_sum += other.latency_sum;
        self.latency_count += other.latency_count;
        self.latency_buckets = merge_buckets(&self.latency_buckets, &other.latency_buckets, 1.0);
    }

    /// `self - earlier`; a pod that restarted (counters went down) counts from zero.
    fn since(&self, earlier: &TrackSample) -> TrackSample {
        if self.requests < earlier.requests || self.latency_count < earlier.latency_count {
            return self.clone();
        }
        TrackSample {
            requests: self.requests - earlier.requests,
            errors: self.errors - earlier.errors,
            latency_sum: self.latency_sum - earlier.latency_sum,
            latency_count: self.latency_count - earlier.latency_count,
            latency_buckets: merge_buckets(&self.latency_buckets, &earlier.latency_buckets, -1.0),
        }
    }
}

/// Bucket by bucket `a + sign * b`, over the union of both bounds (pods of one build share a
/// layout; a bound only one side has counts from that side alone).
fn merge_buckets(a: &[(f64, f64)], b: &[(f64, f64)], sign: f64) -> Vec<(f64, f64)> {
    let mut merged: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    // f64 bounds as ordered keys: positive floats order as their bit patterns do.
    for &(upper, count) in a {
        merged.entry(upper.to_bits()).or_insert((upper, 0.0)).1 += count;
    }
    for &(upper, count) in b {
        merged.entry(upper.to_bits()).or_insert((upper, 0.0)).1 += sign * count;
    }
    merged.into_values().collect()
}

/// Counters of every serving pod at one moment: pod -> (track, counters).
pub type Snapshot = BTreeMap<String, (String, TrackSample)>;

/// Reads `/metrics` of every ready pod of the release.
pub async fn snapshot(client: &kube::Client, pod_client: &kube::Client, namespace: &str, release_name: &str) -> Result<Snapshot> {
    let pods = pods::ready(client, namespace, release_name).await?;
    let answers = join_all(pods.iter().map(|pod| {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let port = metrics_port(pod);
        async move { proxy::get_pod(pod_client, namespace, &name, port, "/metrics").await }
    }))
    .await;
    let mut snapshot = Snapshot::new();
    for (pod, answer) in pods.iter().zip(answers) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let answer = answer?;
        anyhow::ensure!(answer.status == 200, "GET /metrics on pod {name} answered {}: {}", answer.status, answer.in_words());
        snapshot.insert(name, (pods::track_of(pod), parse(&answer.body)));
    }
    Ok(snapshot)
}

pub(crate) fn metrics_port(pod: &k8s_openapi::api::core::v1::Pod) -> u16 {
    crate::k8s::pods::named_port(pod, METRICS_PORT_NAME, 9090)
}

/// The window's traffic per track: each pod's counters at the end less those at the start (a
/// pod that appeared during the window counts whole).
pub fn window(start: &Snapshot, end: &Snapshot) -> BTreeMap<String, TrackSample> {
    let mut tracks: BTreeMap<String, TrackSample> = BTreeMap::new();
    for (pod, (track, counters)) in end {
        let delta = match start.get(pod) {
            Some((_, before)) => counters.since(before),
            None => counters.clone(),
        };
        tracks.entry(track.clone()).or_default().add(&delta);
    }
    tracks
}

/// The route's counters from Prometheus text exposition (what model-server's /metrics serves:
/// OpenMetrics text from prometheus-client). Series of other routes, and anything unparsable,
/// are not counted.
pub fn parse(text: &str) -> TrackSample {
    use prometheus_parse::Value;
    let mut sample = TrackSample::default();
    let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))) else {
        return sample;
    };
    for series in scrape.samples.iter().filter(|s| s.labels.get("route") == Some(ROUTE)) {
        let value = match &series.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) if series.metric == "http_request_duration_seconds" => {
                let buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
                sample.latency_buckets = merge_buckets(&sample.latency_buckets, &buckets, 1.0);
                continue;
            }
            // `_sum` and `_count` of a histogram come as their own series.
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        match series.metric.as_str() {
            "http_requests_total" => {
                sample.requests += value;
                if series.labels.get("status").and_then(|s| s.parse::<u16>().ok()).is_some_and(|s| s >= 500) {
                    sample.errors += value;
                }
            }
            "http_request_duration_seconds_sum" => sample.latency_sum += value,
            "http_request_duration_seconds_count" => sample.latency_count += value,
            _ => {}
        }
    }
    sample
}

/// How a step's analysis came out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl Verdict {
    /// The verdict in words, for people.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "passed",
            Verdict::Fail => "failed",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub canary: TrackSample,
    pub stable: TrackSample,
    pub window_seconds: f64,
    /// The custom checks' values (`deploy/analysis`, with Prometheus).
    #[serde(default)]
    pub checks: Vec<checks::CheckResult>,
    /// Memory and CPU per pod, per track (empty where they could not be read).
    #[serde(default)]
    pub resources: BTreeMap<String, resources::TrackUsage>,
}

impl Analysis {
    /// A window whose metrics could not be read (Prometheus gone, a pod's `/metrics` not
    /// answering): inconclusive, so the canary pauses (exit 3) for a person or `canary resume`
    /// to judge again, never a pass and never an abort. Argo Rollouts counts such measurement
    /// errors and, past `consecutiveErrorLimit` (4), ends the analysis in Error, which aborts
    /// the rollout; here no evidence is not taken for evidence of a bad canary: stable was
    /// never at risk, and a pause costs nothing but time.
    pub fn without_evidence(why: &str, window_seconds: f64) -> Analysis {
        Analysis {
            verdict: Verdict::Inconclusive,
            reasons: vec![format!("no evidence: the window's metrics could not be read ({why})")],
            canary: TrackSample::default(),
            stable: TrackSample::default(),
            window_seconds,
            checks: Vec::new(),
            resources: BTreeMap::new(),
        }
    }

    /// Adds the custom checks' outcomes: a failed check fails the step; one without data makes
    /// a step that would pass inconclusive.
    pub fn with_checks(mut self, results: Vec<checks::CheckResult>) -> Analysis {
        for result in results.iter().filter(|r| r.verdict != Verdict::Pass) {
            self.reasons.push(result.to_string());
            if result.verdict == Verdict::Fail || self.verdict == Verdict::Pass {
                self.verdict = result.verdict.clone();
            }
        }
        self.checks = results;
        self
    }

    /// Adds the resource judgement (canary against stable per pod): a canary that costs too
    /// much fails the step; resources that could not be read are said, not judged (a cluster
    /// that denies the node proxy should not stop every canary).
    pub fn with_resources(mut self, measured: Result<BTreeMap<String, resources::TrackUsage>>, thresholds: &Thresholds) -> Analysis {
        match measured {
            Ok(usage) => {
                let (verdict, reasons) = resources::judge(&usage, thresholds.max_memory_ratio, thresholds.max_cpu_ratio);
                if verdict == Some(Verdict::Fail) {
                    // A cost regression fails whatever the traffic showed, and leads the reasons.
                    self.verdict = Verdict::Fail;
                    self.reasons.splice(0..0, reasons);
                } else {
                    self.reasons.extend(reasons);
                }
                self.resources = usage;
            }
            Err(err) => self.reasons.push(format!("resources not read ({err:#}): not judged")),
        }
        self
    }
}

/// A track's latency as judged: the [`LATENCY_QUANTILE`] from its histogram, or its mean
/// where the source had no histogram; with the measure's name.
fn latency(track: &TrackSample) -> Option<(f64, &'static str)> {
    match track.latency_quantile(LATENCY_QUANTILE) {
        Some(seconds) => Some((seconds, LATENCY_QUANTILE_NAME)),
        None => track.mean_latency().map(|seconds| (seconds, "mean")),
    }
}

/// Judges the canary against the thresholds and against stable.
pub fn judge(tracks: &BTreeMap<String, TrackSample>, thresholds: &Thresholds, window: Duration) -> Analysis {
    let canary = tracks.get("canary").cloned().unwrap_or_default();
    let stable = tracks.get("stable").cloned().unwrap_or_default();
    let mut reasons = Vec::new();
    let mut verdict = Verdict::Pass;
    if canary.requests < thresholds.min_requests as f64 {
        verdict = Verdict::Inconclusive;
        reasons.push(format!(
            "only {} canary requests in {}s (at least {} needed): not enough evidence to pass",
            canary.requests,
            window.as_secs(),
            thresholds.min_requests
        ));
    }
    if canary.requests > 0.0 && canary.error_rate() > thresholds.max_error_rate {
        verdict = Verdict::Fail;
        reasons.push(format!(
            "canary error rate {:.1}% ({} of {}) is above {:.1}% (stable {:.1}%)",
            canary.error_rate() * 100.0,
            canary.errors,
            canary.requests,
            thresholds.max_error_rate * 100.0,
            stable.error_rate() * 100.0
        ));
    }
    let (canary_latency, stable_latency) = (latency(&canary), latency(&stable));
    if let (Some((canary_latency, measure)), Some((stable_latency, _))) = (canary_latency, stable_latency) {
        let limit = stable_latency * thresholds.max_latency_ratio + thresholds.latency_slack_seconds;
        if canary_latency > limit {
            verdict = Verdict::Fail;
            reasons.push(format!(
                "canary {measure} latency {:.1} ms is above {:.1} ms (stable {:.1} ms x {} + {} ms)",
                canary_latency * 1e3,
                limit * 1e3,
                stable_latency * 1e3,
                thresholds.max_latency_ratio,
                thresholds.latency_slack_seconds * 1e3
            ));
        }
    }
    if verdict == Verdict::Pass {
        let said = |t: &TrackSample| match latency(t) {
            Some((seconds, measure)) => format!("{measure} {:.1} ms", seconds * 1e3),
            None => "no latency".to_owned(),
        };
        reasons.push(format!(
            "canary {} requests, {:.1}% errors, {}; stable {} requests, {:.1}% errors, {}",
            canary.requests,
            canary.error_rate() * 100.0,
            said(&canary),
            stable.requests,
            stable.error_rate() * 100.0,
            said(&stable)
        ));
    }
    Analysis { verdict, reasons, canary, stable, window_seconds: window.as_secs_f64(), checks: Vec::new(), resources: BTreeMap::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_without_evidence_is_inconclusive_never_a_pass_or_a_fail_and_says_why() {
        let why = "Prometheus prometheus.monitoring:9090 answered 503 to up: the API server says: no endpoints available";
        let judged = Analysis::without_evidence(why, 15.0);
        assert_eq!(judged.verdict, Verdict::Inconclusive, "a canary pauses for a person; stable was never at risk");
        assert!(judged.reasons[0].starts_with("no evidence") && judged.reasons[0].contains("no endpoints available"), "{judged:?}");
        assert!(!judged.reasons[0].contains(r#"{"kind""#), "the provider's words, not raw JSON");
    }

    const METRICS: &str = r#"# HELP http_requests_total Requests.
http_requests_total{route="/v1/predict",status="200"} 90
http_requests_total{route="/v1/predict",status="500"} 10
http_requests_total{route="/health",status="200"} 500
http_request_duration_seconds_sum{route="/v1/predict"} 0.5
http_request_duration_seconds_count{route="/v1/predict"} 100
http_request_duration_seconds_bucket{route="/v1/predict",le="0.005"} 100
"#;

    fn thresholds() -> Thresholds {
        Thresholds { min_requests: 20, max_error_rate: 0.01, max_latency_ratio: 2.0, latency_slack_seconds: 0.05, ..Default::default() }
    }

    #[test]
    fn only_the_application_route_counts() {
        let sample = parse(METRICS);
        assert_eq!((sample.requests, sample.errors, sample.latency_sum, sample.latency_count), (100.0, 10.0, 0.5, 100.0));
    }

    /// The shape prometheus-client writes (OpenMetrics: TYPE names without `_total`, `# EOF`),
    /// with labels in another order than the split-based parser expected.
    #[test]
    fn openmetrics_families_and_any_label_order_are_read() {
        let text = r#"# HELP http_requests Requests.
# TYPE http_requests counter
http_requests_total{status="500",method="POST",route="/v1/predict"} 4
http_requests_total{method="POST",route="/v1/predict",status="200"} 36
http_requests_total{route="/v1/predict/extra",status="500"} 99
# HELP http_request_duration_seconds Latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_sum{method="POST",route="/v1/predict"} 0.8
http_request_duration_seconds_count{method="POST",route="/v1/predict"} 40
http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/predict"} 38
http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/predict"} 40
# EOF
"#;
        let sample = parse(text);
        assert_eq!((sample.requests, sample.errors, sample.latency_sum, sample.latency_count), (40.0, 4.0, 0.8, 40.0));
        assert_eq!(sample.latency_buckets, vec![(0.005, 38.0), (f64::INFINITY, 40.0)]);
    }

    #[test]
    fn a_window_is_the_difference_and_a_restarted_pod_counts_from_zero() {
        let at = |requests: f64| TrackSample {
            requests,
            errors: 0.0,
            latency_sum: requests / 100.0,
            latency_count: requests,
            latency_buckets: vec![(0.01, requests), (f64::INFINITY, requests)],
        };
        let start = Snapshot::from([("a".to_owned(), ("stable".to_owned(), at(100.0))), ("b".to_owned(), ("canary".to_owned(), at(50.0)))]);
        let end = Snapshot::from([
            ("a".to_owned(), ("stable".to_owned(), at(130.0))),
            ("b".to_owned(), ("canary".to_owned(), at(5.0))),
            ("c".to_owned(), ("canary".to_owned(), at(7.0))),
        ]);
        let tracks = window(&start, &end);
        assert_eq!(tracks["stable"].requests, 30.0);
        assert_eq!(tracks["canary"].requests, 12.0, "b restarted (5 < 50) and c is new: both count whole");
        assert_eq!(tracks["stable"].latency_buckets, vec![(0.01, 30.0), (f64::INFINITY, 30.0)], "buckets are windowed too");
    }

    /// An analysis goes into the journal and must come back out of it (a +Inf bucket bound once
    /// made every later `canary status`, `promote` and `resume` fail to read the state).
    #[test]
    fn an_analysis_round_trips_through_the_journals_json() {
        let sample = TrackSample {
            requests: 10.0,
            latency_count: 10.0,
            latency_buckets: vec![(0.001, 10.0), (f64::INFINITY, 10.0)],
            ..Default::default()
        };
        let tracks = BTreeMap::from([("stable".to_owned(), sample.clone()), ("canary".to_owned(), sample)]);
        let analysis = judge(&tracks, &thresholds(), Duration::from_secs(10));
        let json = serde_json::to_string(&analysis).unwrap();
        let back: Analysis = serde_json::from_str(&json).unwrap();
        assert_eq!(back.reasons, analysis.reasons);
    }

    /// Worked as Prometheus's histogram_quantile works: 100 observations, 50 at or below 1 ms,
    /// 90 at or below 2 ms, 100 at or below 4 ms.
    #[test]
    fn latency_percentiles_interpolate_within_a_bucket_as_prometheus_does() {
        let sample = TrackSample {
            latency_buckets: vec![(0.001, 50.0), (0.002, 90.0), (0.004, 100.0), (f64::INFINITY, 100.0)],
            ..Default::default()
        };
        let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} != {b}");
        close(sample.latency_quantile(0.5), 0.001);
        close(sample.latency_quantile(0.95), 0.002 + 0.002 * 5.0 / 10.0);
        close(sample.latency_quantile(0.25), 0.0005);
        let in_inf = TrackSample { latency_buckets: vec![(0.001, 10.0), (f64::INFINITY, 100.0)], ..Default::default() };
        close(in_inf.latency_quantile(0.95), 0.001);
        assert_eq!(TrackSample::default().latency_quantile(0.95), None, "no observations, no percentile");
    }

    /// The Prometheus path reads `sum by (le)` into the same buckets, so one computation serves
    /// both sources.
    #[test]
    fn prometheus_buckets_by_le_read_as_the_pods_buckets() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"le":"+Inf"},"value":[1700000000,"100"]},
            {"metric":{"le":"0.002"},"value":[1700000000,"90"]},
            {"metric":{"le":"0.001"},"value":[1700000000,"50"]},
            {"metric":{"le":"0.004"},"value":[1700000000,"100"]}]}}"#;
        let buckets = parse_buckets_by_le(body).unwrap();
        assert_eq!(buckets, vec![(0.001, 50.0), (0.002, 90.0), (0.004, 100.0), (f64::INFINITY, 100.0)]);
        let from_prometheus = TrackSample { latency_buckets: buckets, ..Default::default() };
        let text = "# TYPE http_request_duration_seconds histogram\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.001\"} 50\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.002\"} 90\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.004\"} 100\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 100\n";
        let from_pods = parse(text);
        assert_eq!(from_pods.latency_quantile(0.95), from_prometheus.latency_quantile(0.95));
    }

    #[test]
    fn a_failed_custom_check_fails_the_step_and_one_without_data_never_passes_it() {
        let good = TrackSample { requests: 100.0, latency_sum: 0.2, latency_count: 100.0, ..Default::default() };
        let tracks = BTreeMap::from([("stable".to_owned(), good.clone()), ("canary".to_owned(), good)]);
        let passing = judge(&tracks, &thresholds(), Duration::from_secs(30));
        assert_eq!(passing.verdict, Verdict::Pass);
        let check = |name: &str, threshold| checks::CustomCheck {
            name: name.into(),
            description: String::new(),
            query: "q".into(),
            threshold,
            bad: checks::Bad::Above,
        };
        let no_data = passing.clone().with_checks(vec![checks::evaluate(&check("p99", 0.5), None)]);
        assert_eq!(no_data.verdict, Verdict::Inconclusive, "{no_data:?}");
        let failed = passing.clone().with_checks(vec![
            checks::evaluate(&check("p99", 0.5), None),
            checks::evaluate(&check("errors", 0.01), Some(0.2)),
            checks::evaluate(&check("ok", 1.0), Some(0.5)),
        ]);
        assert_eq!(failed.verdict, Verdict::Fail);
        assert!(failed.reasons.iter().any(|r| r == "check errors: 0.2000 (fails above 0.01): failed"), "{:?}", failed.reasons);
        assert_eq!(failed.checks.len(), 3, "every value is kept for the report, passing ones too");
    }

    #[test]
    fn errors_fail_too_few_requests_are_inconclusive_and_slow_fails() {
        let good = TrackSample { requests: 100.0, errors: 0.0, latency_sum: 0.2, latency_count: 100.0, latency_buckets: Vec::new() };
        let tracks = |canary: TrackSample| BTreeMap::from([("stable".to_owned(), good.clone()), ("canary".to_owned(), canary)]);
        let window = Duration::from_secs(30);
        assert_eq!(judge(&tracks(good.clone()), &thresholds(), window).verdict, Verdict::Pass);
        let failing = TrackSample { errors: 50.0, ..good.clone() };
        assert_eq!(judge(&tracks(failing), &thresholds(), window).verdict, Verdict::Fail);
        let few = TrackSample { requests: 3.0, errors: 0.0, latency_sum: 0.006, latency_count: 3.0, latency_buckets: Vec::new() };
        let verdict = judge(&tracks(few), &thresholds(), window);
        assert_eq!(verdict.verdict, Verdict::Inconclusive, "{verdict:?}");
        // A tail: 8 of 100 canary requests take a second. Judged by p95 against stable's.
        let fast = vec![(0.001, 100.0), (1.024, 100.0), (f64::INFINITY, 100.0)];
        let with_tail = vec![(0.001, 92.0), (1.024, 100.0), (f64::INFINITY, 100.0)];
        let stable = TrackSample { latency_buckets: fast, ..good.clone() };
        let canary = TrackSample { latency_buckets: with_tail, ..good.clone() };
        let tail = judge(&BTreeMap::from([("stable".to_owned(), stable), ("canary".to_owned(), canary)]), &thresholds(), window);
        assert_eq!(tail.verdict, Verdict::Fail, "{tail:?}");
        assert!(tail.reasons[0].starts_with("canary p95 latency 384.6 ms is above 51.9 ms"), "{:?}", tail.reasons);
        let slow = TrackSample { latency_sum: 20.0, ..good.clone() };
        assert_eq!(judge(&tracks(slow), &thresholds(), window).verdict, Verdict::Fail);
        let none = BTreeMap::from([("stable".to_owned(), good.clone())]);
        assert_eq!(judge(&none, &thresholds(), window).verdict, Verdict::Inconclusive, "no canary traffic never passes");
    }

    fn sample(requests: f64, errors: f64, mean_seconds: f64) -> TrackSample {
        TrackSample { requests, errors, latency_sum: mean_seconds * requests, latency_count: requests, latency_buckets: Vec::new() }
    }

    fn judged(stable: TrackSample, canary: TrackSample) -> Analysis {
        let tracks = BTreeMap::from([("stable".to_owned(), stable), ("canary".to_owned(), canary)]);
        judge(&tracks, &thresholds(), Duration::from_secs(30))
    }

    /// A canary failing its few requests is a failure, not a lack of evidence: an analysis never
    /// waits for more traffic from a version already seen failing.
    #[test]
    fn errors_in_few_requests_fail_rather_than_wait() {
        let analysis = judged(sample(100.0, 0.0, 0.002), sample(5.0, 5.0, 0.002));
        assert_eq!(analysis.verdict, Verdict::Fail, "{analysis:?}");
        assert_eq!(analysis.reasons.len(), 2, "both said: {:?}", analysis.reasons);
        assert!(analysis.reasons[1].starts_with("canary error rate 100.0% (5 of 5)"), "{:?}", analysis.reasons);
    }

    /// The limits are inclusive: at the threshold passes, above it fails.
    #[test]
    fn a_canary_at_its_limits_passes_and_just_above_fails() {
        let stable = sample(1000.0, 0.0, 0.010);
        // 1 % errors, at max_error_rate; mean latency 10 ms x 2 + 50 ms = 70 ms, at the limit.
        assert_eq!(judged(stable.clone(), sample(1000.0, 10.0, 0.070)).verdict, Verdict::Pass);
        assert_eq!(judged(stable.clone(), sample(1000.0, 11.0, 0.010)).verdict, Verdict::Fail);
        assert_eq!(judged(stable, sample(1000.0, 0.0, 0.0701)).verdict, Verdict::Fail);
    }

    /// Stable with no latency to compare with (no requests in the window): the canary is judged
    /// on errors and evidence alone, never failed on a comparison with nothing.
    #[test]
    fn without_stable_latency_the_canary_is_not_judged_on_latency() {
        let idle_stable = TrackSample::default();
        let analysis = judged(idle_stable, sample(100.0, 0.0, 5.0));
        assert_eq!(analysis.verdict, Verdict::Pass, "{analysis:?}");
        assert!(analysis.reasons[0].contains("stable 0 requests") && analysis.reasons[0].contains("no latency"), "{:?}", analysis.reasons);
    }

    #[test]
    fn a_pass_says_both_tracks_numbers() {
        let analysis = judged(sample(300.0, 3.0, 0.004), sample(100.0, 0.0, 0.002));
        assert_eq!(analysis.verdict, Verdict::Pass);
        assert_eq!(analysis.reasons, ["canary 100 requests, 0.0% errors, mean 2.0 ms; stable 300 requests, 1.0% errors, mean 4.0 ms"]);
        assert_eq!(analysis.window_seconds, 30.0);
    }
}
