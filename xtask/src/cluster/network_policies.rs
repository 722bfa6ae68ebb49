//! A NetworkPolicy enforcer for a local cluster: kube-network-policies (Kubernetes SIG Network's
//! own, the one kind's kindnetd embeds), built from its Go module and installed with the
//! module's own chart as a DaemonSet in kube-system. Without one, a cluster accepts the chart's
//! NetworkPolicy and enforces nothing: staging's and prod's policies would be proven by nothing.
//!
//! One change to upstream, in a copy of the module: where the kernel has no nftables `queue`
//! expression (CONFIG_NFT_QUEUE; this machine's kernel has none), the first packet of each
//! connection is queued through xtables' NFQUEUE target instead, as `iptables-nft -j NFQUEUE`
//! does (deploy/kind/network-policies/queue_compat.go, probed once at start).

use anyhow::Result;
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::go_image::{patched_copy, GoImage};
use super::kind::RunningCluster;
use crate::go::{Go, WrapperBuild};

/// The newest release the module proxy serves (v0.1.0 to v0.6.0 are refused with 403).
pub const VERSION: &str = "v0.8.0";
const MODULE: &str = "sigs.k8s.io/kube-network-policies";
const IMAGE_REPOSITORY: &str = "shipshape/kube-network-policies";
/// The DaemonSet and the release: in kube-system, as kindnetd's is.
const RELEASE: &str = "kube-network-policies";
const NAMESPACE: &str = "kube-system";
const FLAVOUR: &str = "xt-queue";

/// The enforcer's image, built once per version.
pub fn image(sh: &Shell, docker: &Docker) -> Result<String> {
    let go = Go::detect(sh);
    let source = go.download(&format!("{MODULE}@{VERSION}"))?;
    let controller = std::fs::read_to_string(source.dir.join("pkg/networkpolicy/controller.go"))?;
    let dns_agent = std::fs::read_to_string(source.dir.join("pkg/networkpolicy/dnsagent.go"))?;
    let compat = std::fs::read_to_string(crate::repo_root().join("deploy/kind/network-policies/queue_compat.go"))?;
    let patched = patched_copy(
        &source.dir,
        &format!("kube-network-policies-{VERSION}-{FLAVOUR}"),
        &[
            ("pkg/networkpolicy/controller.go", queued_verdicts(&controller)?),
            ("pkg/networkpolicy/dnsagent.go", queued_verdicts(&dns_agent)?),
        ],
        &[("pkg/networkpolicy/queue_compat.go", compat)],
    )?;
    GoImage {
        name: "kube-network-policies",
        about: "kube-network-policies (NetworkPolicy enforcer) from its Go module",
        repository: IMAGE_REPOSITORY,
        binary_in_image: "/bin/netpol",
        // Root, privileged: it programs the node's nftables (the chart asks for NET_ADMIN).
        user: 0,
        flavour: Some(FLAVOUR),
        // The chart's `args` start with /bin/netpol, as upstream's image (CMD, no ENTRYPOINT).
        args_name_the_binary: true,
        build: WrapperBuild {
            go_mod_extra: format!("replace {MODULE} => {}", patched.display()),
            sums_from: Some(source.dir.join("go.sum")),
            ..WrapperBuild::new(MODULE, VERSION, &[format!("{MODULE}/cmd")])
        },
    }
    .ensure(sh, docker)
}

/// Every queue verdict in `source` goes through `queueVerdict` (queue_compat.go): the rules' `queue,`
/// elements and the DNS agent's literal. Refuses a source where it finds none, so a new upstream
/// version that moved them fails here, not silently unenforced.
fn queued_verdicts(source: &str) -> Result<String> {
    let literal = "&expr.Queue{Num: uint16(n.nfQueueID), Flag: expr.QueueFlagBypass},";
    let mut count = 0;
    let mut out = String::with_capacity(source.len() + 256);
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed == "queue," {
            out.push_str(&line.replacen("queue,", "queueVerdict(queue),", 1));
            count += 1;
        } else if trimmed == literal {
            out.push_str(&line.replacen(literal, &format!("queueVerdict({}),", literal.trim_end_matches(',')), 1));
            count += 1;
        } else {
            out.push_str(line);
        }
    }
    anyhow::ensure!(
        count > 0,
        "kube-network-policies {VERSION}: no queue verdict found to route through queue_compat.go; the recipe needs updating"
    );
    Ok(out)
}

/// Builds and loads the image, and installs the module's chart in kube-system; waits until
/// the enforcer runs on every node.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let image = image(sh, &Docker::connect(sh)?)?;
    let source = Go::detect(sh).download(&format!("{MODULE}@{VERSION}"))?;
    let chart = AddOnChart {
        what: "kube-network-policies (NetworkPolicy enforcer)",
        chart: &source.dir.join("charts/kube-network-policies"),
        release: RELEASE,
        namespace: NAMESPACE,
        values: serde_json::json!({
            "fullnameOverride": RELEASE,
            "image": {"repository": super::app_images::in_registry(IMAGE_REPOSITORY, super::registry::HOST), "tag": super::go_image::tag_of(&image)},
            // NetworkPolicy only (AdminNetworkPolicy is alpha, with CRDs this cluster lacks).
            "adminNetworkPolicy": false,
        }),
        drop_dependencies: false,
        workload: Workload::DaemonSet,
    };
    super::add_on::install(sh, cluster, &image, &chart)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_queue_verdict_goes_through_the_compat_check() {
        let rules = "\t\tExprs: []expr.Any{\n\t\t\t&expr.Lookup{SetName: \"podips-v4\"},\n\t\t\tqueue,\n\t\t},\n\tqueue := &expr.Queue{}\n";
        let patched = super::queued_verdicts(rules).unwrap();
        assert!(patched.contains("\t\t\tqueueVerdict(queue),\n"), "{patched}");
        assert!(patched.contains("queue := &expr.Queue{}"), "the declaration stays: {patched}");
        let agent = "\t\t\t&expr.Queue{Num: uint16(n.nfQueueID), Flag: expr.QueueFlagBypass},\n";
        assert_eq!(
            super::queued_verdicts(agent).unwrap(),
            "\t\t\tqueueVerdict(&expr.Queue{Num: uint16(n.nfQueueID), Flag: expr.QueueFlagBypass}),\n"
        );
        assert!(super::queued_verdicts("package networkpolicy\n").unwrap_err().to_string().contains("recipe needs updating"));
    }
}
