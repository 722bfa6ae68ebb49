//! What each track costs, canary against stable, as the TenSafe runbook lists beside error
//! rate and latency: memory (working set) and CPU per pod, from the kubelet's resource metrics
//! (`/metrics/resource` on each node, read through the API server's node proxy: no
//! metrics-server assumed). A canary that needs far more than stable per pod fails its step.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::Verdict;
use crate::k8s::{pods, proxy};

/// The serving container's name in the chart.
const CONTAINER: &str = "api";
/// Differences smaller than these are noise, whatever the ratio (a pod at 8 MiB against 3).
const MEMORY_SLACK_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
const CPU_SLACK_CORES: f64 = 0.05;

/// One pod's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    pub track: String,
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
}

/// Every serving pod's usage at one moment: pod -> usage.
pub type ResourceSnapshot = BTreeMap<String, PodUsage>;

/// What one track's pods used over a window, per pod on average.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrackUsage {
    /// Pods measured at the window's end.
    pub pods: usize,
    /// Working set at the window's end.
    pub memory_bytes: f64,
    /// CPU over the window, in cores, of the pods seen at both ends (None: no such pod, e.g. a
    /// canary pod younger than the kubelet's first measurement of it).
    pub cpu_cores: Option<f64>,
}

/// Reads the kubelet's resource metrics on every node that runs a ready pod of the release.
pub async fn snapshot(client: &kube::Client, namespace: &str, release_name: &str) -> Result<ResourceSnapshot> {
    let ready = pods::ready(client, namespace, release_name).await?;
    let tracks: BTreeMap<String, String> = ready.iter().map(|p| (p.metadata.name.clone().unwrap_or_default(), pods::track_of(p))).collect();
    let nodes: BTreeSet<String> = ready.iter().filter_map(|p| pods::node_of(p).map(str::to_owned)).collect();
    let mut snapshot = ResourceSnapshot::new();
    for node in nodes {
        let answer = proxy::get_node(client, &node, "/metrics/resource").await?;
        anyhow::ensure!(answer.status == 200, "the kubelet's resource metrics on node {node} answered {}", answer.status);
        for (pod, (cpu_seconds, memory_bytes)) in parse(&answer.body, namespace) {
            if let Some(track) = tracks.get(&pod) {
                snapshot.insert(pod, PodUsage { track: track.clone(), cpu_seconds, memory_bytes });
            }
        }
    }
    Ok(snapshot)
}

/// The serving container's CPU seconds and working set per pod of `namespace`, from the
/// kubelet's `/metrics/resource` text.
pub fn parse(text: &str, namespace: &str) -> BTreeMap<String, (f64, f64)> {
    use prometheus_parse::Value;
    let mut found: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))) else {
        return found;
    };
    for series in scrape.samples.iter() {
        if series.labels.get("namespace") != Some(namespace) || series.labels.get("container") != Some(CONTAINER) {
            continue;
        }
        let (Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value)) = series.value else { continue };
        let Some(pod) = series.labels.get("pod") else { continue };
        let entry = found.entry(pod.to_owned()).or_default();
        match series.metric.as_str() {
            "container_cpu_usage_seconds_total" => entry.0 = value,
            "container_memory_working_set_bytes" => entry.1 = value,
            _ => {}
        }
    }
    found
}

/// Per track, what its pods used on average: memory of every pod at the window's end, CPU of
/// the pods seen at both ends (one that came during the window has no CPU delta to speak of).
pub fn usage(start: &ResourceSnapshot, end: &ResourceSnapshot, window: Duration) -> BTreeMap<String, TrackUsage> {
    // track -> (pods, memory, pods at both ends, cores)
    let mut sums: BTreeMap<String, (usize, f64, usize, f64)> = BTreeMap::new();
    for (pod, now) in end {
        let entry = sums.entry(now.track.clone()).or_default();
        entry.0 += 1;
        entry.1 += now.memory_bytes;
        if let Some(before) = start.get(pod) {
            entry.2 += 1;
            entry.3 += (now.cpu_seconds - before.cpu_seconds).max(0.0) / window.as_secs_f64().max(1.0);
        }
    }
    sums.into_iter()
        .map(|(track, (pods, memory, timed, cores))| {
            let cpu_cores = (timed > 0).then(|| cores / timed as f64);
            (track, TrackUsage { pods, memory_bytes: memory / pods as f64, cpu_cores })
        })
        .collect()
}

/// The canary's cost per pod against stable's: above `max_ratio` times stable's (plus a little,
/// for noise) fails. Returns the verdict and its reasons; without both tracks measured, no
/// verdict (said in the reasons).
pub fn judge(usage: &BTreeMap<String, TrackUsage>, max_memory_ratio: f64, max_cpu_ratio: f64) -> (Option<Verdict>, Vec<String>) {
    let (Some(canary), Some(stable)) = (usage.get("canary"), usage.get("stable")) else {
        return (None, vec!["resources: not measured on both tracks".to_owned()]);
    };
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    let mut reasons = Vec::new();
    let memory_limit = stable.memory_bytes * max_memory_ratio + MEMORY_SLACK_BYTES;
    if canary.memory_bytes > memory_limit {
        reasons.push(format!(
            "canary memory {:.0} MiB per pod is above {:.0} MiB (stable {:.0} MiB x {max_memory_ratio} + {:.0} MiB)",
            mib(canary.memory_bytes),
            mib(memory_limit),
            mib(stable.memory_bytes),
            mib(MEMORY_SLACK_BYTES)
        ));
    }
    if let (Some(canary_cpu), Some(stable_cpu)) = (canary.cpu_cores, stable.cpu_cores) {
        let cpu_limit = stable_cpu * max_cpu_ratio + CPU_SLACK_CORES;
        if canary_cpu > cpu_limit {
            reasons.push(format!(
                "canary CPU {:.0}m per pod is above {:.0}m (stable {:.0}m x {max_cpu_ratio} + {:.0}m)",
                canary_cpu * 1e3,
                cpu_limit * 1e3,
                stable_cpu * 1e3,
                CPU_SLACK_CORES * 1e3
            ));
        }
    }
    if reasons.is_empty() {
        let cpu = |cores: Option<f64>| cores.map(|c| format!("{:.0}m CPU", c * 1e3)).unwrap_or_else(|| "CPU not yet measured".to_owned());
        let said = format!(
            "resources per pod: canary {:.0} MiB, {}; stable {:.0} MiB, {}",
            mib(canary.memory_bytes),
            cpu(canary.cpu_cores),
            mib(stable.memory_bytes),
            cpu(stable.cpu_cores)
        );
        return (Some(Verdict::Pass), vec![said]);
    }
    (Some(Verdict::Fail), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="api",namespace="e2e",pod="model-server-a"} 1.5 1764900000000
container_cpu_usage_seconds_total{container="api",namespace="e2e",pod="model-server-canary-b"} 2.5 1764900000000
container_cpu_usage_seconds_total{container="postgres",namespace="e2e",pod="model-server-postgres-c"} 9 1764900000000
container_cpu_usage_seconds_total{container="api",namespace="other",pod="model-server-a"} 7 1764900000000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="api",namespace="e2e",pod="model-server-a"} 8.388608e+06 1764900000000
container_memory_working_set_bytes{container="api",namespace="e2e",pod="model-server-canary-b"} 1.2582912e+08 1764900000000
"#;

    #[test]
    fn the_kubelet_s_resource_metrics_are_read_per_pod_of_the_namespace() {
        let found = parse(KUBELET, "e2e");
        assert_eq!(found.len(), 2, "the serving container of this namespace only: {found:?}");
        assert_eq!(found["model-server-a"], (1.5, 8.0 * 1024.0 * 1024.0));
        assert_eq!(found["model-server-canary-b"], (2.5, 120.0 * 1024.0 * 1024.0));
    }

    fn pod(track: &str, cpu_seconds: f64, memory_mib: f64) -> PodUsage {
        PodUsage { track: track.to_owned(), cpu_seconds, memory_bytes: memory_mib * 1024.0 * 1024.0 }
    }

    /// Issue 23: a canary that needs far more memory per pod than stable fails its step.
    #[test]
    fn a_canary_costing_far_more_than_stable_per_pod_fails_and_a_similar_one_passes() {
        let start = ResourceSnapshot::from([
            ("s1".to_owned(), pod("stable", 10.0, 8.0)),
            ("s2".to_owned(), pod("stable", 10.0, 8.0)),
            ("c1".to_owned(), pod("canary", 1.0, 8.0)),
        ]);
        let end = ResourceSnapshot::from([
            ("s1".to_owned(), pod("stable", 11.0, 8.0)),
            ("s2".to_owned(), pod("stable", 11.0, 10.0)),
            ("c1".to_owned(), pod("canary", 2.0, 120.0)),
            ("c2".to_owned(), pod("canary", 0.5, 500.0)),
        ]);
        let used = usage(&start, &end, Duration::from_secs(20));
        assert_eq!(used["stable"], TrackUsage { pods: 2, memory_bytes: 9.0 * 1024.0 * 1024.0, cpu_cores: Some(0.05) });
        assert_eq!(used["canary"].pods, 2, "memory: every pod at the end");
        assert_eq!(used["canary"].cpu_cores, Some(0.05), "CPU: only the pod seen at both ends");
        let (verdict, reasons) = judge(&used, 2.0, 3.0);
        assert_eq!(verdict, Some(Verdict::Fail));
        assert!(reasons[0].contains("canary memory 310 MiB per pod is above 34 MiB"), "{reasons:?}");
        let busy = BTreeMap::from([
            ("stable".to_owned(), TrackUsage { pods: 2, memory_bytes: 1e7, cpu_cores: Some(0.01) }),
            ("canary".to_owned(), TrackUsage { pods: 1, memory_bytes: 1e7, cpu_cores: Some(0.5) }),
        ]);
        let (verdict, reasons) = judge(&busy, 2.0, 3.0);
        assert_eq!(verdict, Some(Verdict::Fail));
        assert!(reasons[0].contains("canary CPU 500m per pod is above 80m"), "{reasons:?}");

        let similar = ResourceSnapshot::from([("c1".to_owned(), pod("canary", 2.0, 12.0)), ("s1".to_owned(), pod("stable", 11.0, 9.0))]);
        let (verdict, reasons) = judge(&usage(&start, &similar, Duration::from_secs(20)), 2.0, 3.0);
        assert_eq!(verdict, Some(Verdict::Pass), "{reasons:?}");
        assert!(reasons[0].starts_with("resources per pod: canary 12 MiB"), "{reasons:?}");

        let (verdict, _) = judge(&usage(&start, &ResourceSnapshot::new(), Duration::from_secs(20)), 2.0, 3.0);
        assert_eq!(verdict, None, "nothing measured is no verdict");
    }
}
