//! Pods on the nodes of a cluster made with the locally built node image, which carries a
//! static CNI config instead of kindnetd (node_image.rs): what kindnetd does for kind's own
//! image, done at creation and again by every `cluster up`. Each node gets its own pod range (node i: 10.244.i.0/24, its CNI
//! config mounted over the image's before kubelet starts, see [`node_configs`]), and each node a
//! route to every other node's range through that node's address on kind's network. Pods keep
//! their own addresses across nodes (no masquerade between them, as with kindnetd); traffic
//! leaving the pod network is masqueraded by the node it leaves.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::docker::Docker;
use super::node_image;
use super::stage::Stages;

/// kind's Docker network, which every node joins.
const KIND_NETWORK: &str = "kind";
/// The whole pod network (kind's default podSubnet); node i has 10.244.i.0/24.
const POD_NETWORK: &str = "10.244.0.0/16";

/// The node containers kind makes for a cluster of one control plane and `workers` workers, in
/// kind's naming order.
pub fn node_containers(cluster: &str, workers: u32) -> Vec<String> {
    let mut nodes = vec![format!("{cluster}-control-plane")];
    for i in 1..=workers {
        nodes.push(if i == 1 { format!("{cluster}-worker") } else { format!("{cluster}-worker{i}") });
    }
    nodes
}

/// The pod range of the node at `index` in [`node_containers`]' order.
pub fn pod_range(index: usize) -> String {
    format!("10.244.{index}.0/24")
}

/// Each node's CNI config, written under `dir` for the cluster config to mount: (node, file).
pub fn node_configs(dir: &Path, nodes: &[String]) -> Result<Vec<(String, PathBuf)>> {
    std::fs::create_dir_all(dir)?;
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let file = dir.join(format!("{node}.conflist"));
            std::fs::write(&file, node_image::cni_config(&pod_range(index)))?;
            Ok((node.clone(), file))
        })
        .collect()
}

/// The `nodes:` list of a kind cluster config for these nodes, each mounting its CNI config.
pub fn kind_nodes_yaml(configs: &[(String, PathBuf)]) -> String {
    let mut yaml = String::from("nodes:\n");
    for (index, (_, file)) in configs.iter().enumerate() {
        let role = if index == 0 { "control-plane" } else { "worker" };
        yaml.push_str(&format!(
            "  - role: {role}\n    extraMounts:\n      - hostPath: {}\n        containerPath: {}\n        readOnly: true\n",
            file.display(),
            node_image::CNI_CONFIG_PATH
        ));
    }
    yaml
}

/// Routes between the nodes' pod ranges, and masquerade for traffic leaving the pod network:
/// idempotent (`ip route replace`, an iptables rule added once).
pub fn connect(docker: &Docker, nodes: &[String]) -> Result<()> {
    let log = Stages::new()?.log_path("pod-network")?;
    let addresses: Vec<String> =
        nodes.iter().map(|node| docker.address_on(node, KIND_NETWORK)).collect::<Result<_>>().context("reading the nodes' addresses")?;
    for (index, node) in nodes.iter().enumerate() {
        let mut script = String::new();
        for (other, address) in addresses.iter().enumerate().filter(|(other, _)| *other != index) {
            script.push_str(&format!("ip route replace {} via {address}; ", pod_range(other)));
        }
        let masquerade = format!("-s {POD_NETWORK} ! -d {POD_NETWORK} -j MASQUERADE");
        script.push_str(&format!("iptables -t nat -C POSTROUTING {masquerade} 2>/dev/null || iptables -t nat -A POSTROUTING {masquerade}"));
        docker.exec(node, &script, &log).with_context(|| format!("routing pods between the nodes (on {node})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_named_and_numbered_as_kind_names_them() {
        assert_eq!(node_containers("prod", 0), ["prod-control-plane"]);
        assert_eq!(node_containers("prod", 3), ["prod-control-plane", "prod-worker", "prod-worker2", "prod-worker3"]);
        assert_eq!((pod_range(0), pod_range(3)), ("10.244.0.0/24".to_owned(), "10.244.3.0/24".to_owned()));
    }

    #[test]
    fn each_node_mounts_its_own_pod_range() {
        let dir = tempfile::tempdir().unwrap();
        let configs = node_configs(dir.path(), &node_containers("p", 2)).unwrap();
        let second = std::fs::read_to_string(&configs[1].1).unwrap();
        assert!(second.contains("\"subnet\": \"10.244.1.0/24\"") && !second.contains("10.244.0.0/24"), "{second}");
        let yaml = kind_nodes_yaml(&configs);
        assert_eq!(yaml.matches("- role: worker").count(), 2);
        assert_eq!(yaml.matches("- role: control-plane").count(), 1);
        assert_eq!(yaml.matches(&format!("containerPath: {}", node_image::CNI_CONFIG_PATH)).count(), 3);
    }
}
