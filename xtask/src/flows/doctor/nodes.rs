//! doctor's view of the nodes the release runs on: Ready, cordoned, under pressure, and how
//! full (requests against allocatable).
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::Api;

use crate::report::{Check, Outcome};

/// The nodes, as the troubleshooting sections read them (`kubectl get nodes`, `describe
/// nodes`): cordoned ones (a drain, an upgrade), not Ready ones, pressure, and what is requested
/// of each node's allocatable CPU and memory.
pub(super) async fn nodes(client: &kube::Client, pods: &[Pod]) -> Check {
    let nodes = match Api::<Node>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(err) => {
            return Check::new("nodes", Outcome::Pass, format!("not read ({}): nodes are cluster-wide", crate::k8s::in_words(&err)))
        }
    };
    let on = |node: &str| pods.iter().filter(|p| crate::k8s::pods::node_of(p) == Some(node)).count();
    let mut check = node_findings(&nodes, on);
    // Every pod holding its requests on a node (finished ones hold none): cluster-wide, so read
    // only where the user may list pods everywhere; said when not.
    let holding = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    match Api::<Pod>::all(client.clone()).list(&holding).await {
        Ok(all) => check.detail.push_str(&format!("; requested of allocatable: {}", requested(&nodes, &all.items).join("; "))),
        Err(err) => check.detail.push_str(&format!("; requests not read ({})", crate::k8s::in_words(&err))),
    }
    check
}

/// Per node, what its pods request of its allocatable CPU and memory, as `kubectl describe node`
/// totals it ("Allocated resources"): `w1 cpu 1850m of 1950m (95 %), memory 300Mi of 7.6Gi (4 %)`.
/// What the scheduler fits a new pod into; usage is another matter (no metrics-server assumed).
pub fn requested(nodes: &[Node], pods: &[Pod]) -> Vec<String> {
    nodes
        .iter()
        .map(|node| {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let of = |resource: &str| allocatable.and_then(|a| a.get(resource)).and_then(|q| quantity(&q.0)).unwrap_or(0.0);
            let (mut cpu, mut memory) = (0.0, 0.0);
            for pod in pods.iter().filter(|p| crate::k8s::pods::node_of(p) == Some(name)) {
                for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
                    let asked = |resource: &str| requests.and_then(|r| r.get(resource)).and_then(|q| quantity(&q.0)).unwrap_or(0.0);
                    cpu += asked("cpu");
                    memory += asked("memory");
                }
            }
            let share = |used: f64, total: f64| if total > 0.0 { used * 100.0 / total } else { 0.0 };
            format!(
                "{name} cpu {:.0}m of {:.0}m ({:.0} %), memory {} of {} ({:.0} %)",
                cpu * 1000.0,
                of("cpu") * 1000.0,
                share(cpu, of("cpu")),
                mebibytes(memory),
                mebibytes(of("memory")),
                share(memory, of("memory"))
            )
        })
        .collect()
}

fn mebibytes(bytes: f64) -> String {
    format!("{:.0}Mi", bytes / (1024.0 * 1024.0))
}

/// A Kubernetes quantity ("250m", "1", "64Mi", "2Gi", "1e3") as a number of its base unit
/// (cores, bytes).
pub fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = text.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    text.parse().ok()
}

/// The nodes' state in words (`pods_on`: how many of the release's pods a node runs).
pub fn node_findings(nodes: &[Node], pods_on: impl Fn(&str) -> usize) -> Check {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind).map(|c| c.status == "True");
        if condition("Ready") != Some(true) {
            problems.push(format!("node {name} is not Ready ({} of the release's pods on it)", pods_on(&name)));
        }
        for pressure in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            if condition(pressure) == Some(true) {
                warnings.push(format!("node {name} reports {pressure}"));
            }
        }
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            warnings.push(format!(
                "node {name} is cordoned (SchedulingDisabled: drained, or being upgraded): no new pod starts there, {} of the \
                 release's pods run on it; `kubectl uncordon {name}` once its maintenance is done",
                pods_on(&name)
            ));
        }
    }
    match (problems.is_empty(), warnings.is_empty()) {
        (true, true) => Check::new("nodes", Outcome::Pass, format!("{} node(s) Ready and schedulable, no pressure", nodes.len())),
        (true, false) => Check::new("nodes", Outcome::Warn, warnings.join("; ")),
        (false, _) => Check::new("nodes", Outcome::Fail, problems.into_iter().chain(warnings).collect::<Vec<_>>().join("; "))
            .with_fix("`kubectl describe node <name>` says why; the pods on it are rescheduled once it is gone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, cordoned: bool, pressure: Option<&str>) -> Node {
        let mut conditions = vec![serde_json::json!({"type": "Ready", "status": if ready { "True" } else { "False" }})];
        if let Some(kind) = pressure {
            conditions.push(serde_json::json!({"type": kind, "status": "True"}));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"unschedulable": cordoned},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn nodes_drained_lost_or_under_pressure_are_named_with_what_runs_there() {
        let healthy = [node("w1", true, false, None), node("w2", true, false, None)];
        assert_eq!(node_findings(&healthy, |_| 3).outcome, Outcome::Pass);
        let drained = [node("w1", true, false, None), node("w2", true, true, None)];
        let said = node_findings(&drained, |n| if n == "w2" { 0 } else { 5 });
        assert_eq!(said.outcome, Outcome::Warn);
        assert!(
            said.detail.contains("node w2 is cordoned")
                && said.detail.contains("0 of the release's pods")
                && said.detail.contains("kubectl uncordon w2"),
            "{said:?}"
        );
        let lost = [node("w1", false, false, Some("DiskPressure"))];
        let said = node_findings(&lost, |_| 4);
        assert_eq!(said.outcome, Outcome::Fail);
        assert!(said.detail.contains("w1 is not Ready (4 of") && said.detail.contains("DiskPressure") && said.fix.is_some(), "{said:?}");
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("lots"), None);
    }

    /// Issue 23: `kubectl describe nodes`' "Allocated resources", per node.
    #[test]
    fn each_node_says_what_its_pods_request_of_what_it_can_give() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}
        }))
        .unwrap();
        let pod = |node: &str, cpu: &str, memory: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
            }))
            .unwrap()
        };
        let said = requested(&[node], &[pod("w1", "1500m", "1Gi"), pod("w1", "250m", "512Mi"), pod("w2", "4", "4Gi")]);
        assert_eq!(said, ["w1 cpu 1750m of 2000m (88 %), memory 1536Mi of 4096Mi (38 %)"]);
    }
}
