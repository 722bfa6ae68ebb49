//! Tier 2: what the chart promises, asserted on rendered output (no cluster): the values schema
//! rejects bad values naming the key, and the shapes the runbooks rely on are there.
use std::io::Write;

use xtask::chart::{self, Env, Variant};
use xtask::helm::Helm;

/// Renders dev/stable with `extra` values YAML on top; the error text on failure.
fn render_with(env: Env, variant: Variant, extra: &str) -> Result<String, String> {
    let sh = xtask::repo_shell().unwrap();
    let helm = Helm::new(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(extra.as_bytes()).unwrap();
    let mut release = chart::release_spec(env, variant, None);
    release.values_files.push(file.path().to_path_buf());
    // Environments that require signatures render only pinned tags: pin the appVersion.
    if env != Env::Dev {
        let tag = chart::app_version().unwrap().replace('.', "\\.");
        release.set.push((format!("imageDigests.{tag}"), format!("sha256:{}", "a".repeat(64))));
    }
    helm.template(&chart::chart_dir(), &release).map_err(|e| format!("{e:#}"))
}

fn rejected(extra: &str) -> String {
    match render_with(Env::Dev, Variant::Stable, extra) {
        Ok(_) => panic!("values were accepted:\n{extra}"),
        Err(message) => message,
    }
}

#[test]
fn schema_rejects_negative_replicas_naming_the_key() {
    let message = rejected("replicaCount: -1\n");
    assert!(message.contains("replicaCount"), "{message}");
}

#[test]
fn schema_rejects_wrong_types_naming_the_key() {
    let message = rejected("replicaCount: two\n");
    assert!(message.contains("replicaCount"), "{message}");
    let message = rejected("image:\n  tag: 1.2\n");
    assert!(message.contains("tag"), "an unquoted numeric tag must be refused: {message}");
    let message = rejected("canary:\n  enabled: \"yes\"\n");
    assert!(message.contains("enabled"), "{message}");
}

#[test]
fn schema_rejects_a_missing_admin_token_secret_name() {
    let message = rejected("env:\n  adminTokenSecretName: \"\"\n");
    assert!(message.contains("adminTokenSecretName"), "{message}");
}

#[test]
fn schema_rejects_unknown_keys() {
    let message = rejected("replicas: 3\n");
    assert!(message.contains("replicas"), "a typo must not be silently ignored: {message}");
}

#[test]
fn a_canary_needs_a_tag() {
    let message = rejected("canary:\n  enabled: true\n");
    assert!(message.contains("tag"), "{message}");
}

#[test]
fn canary_and_blue_green_are_exclusive() {
    let message = rejected("canary:\n  enabled: true\n  image:\n    tag: \"2\"\nblueGreen:\n  enabled: true\n");
    assert!(message.contains("cannot both be true"), "{message}");
}

#[test]
fn external_secrets_need_a_store() {
    let message = render_with(Env::Dev, Variant::ExternalSecrets, "externalSecrets:\n  secretStoreRef:\n    name: \"\"\n").unwrap_err();
    assert!(message.contains("name"), "{message}");
}

#[test]
fn prod_runs_ten_replicas_with_both_secret_references() {
    let manifests = render_with(Env::Prod, Variant::Stable, "{}\n").unwrap();
    assert!(manifests.contains("replicas: 10"), "{manifests}");
    assert!(manifests.contains("name: model-server-admin-token\n                  key: token"), "admin token reference missing");
    assert!(manifests.contains("name: model-server-mlflow\n                  key: password"), "MLflow reference missing");
}

#[test]
fn selectors_never_contain_a_version() {
    // Deployment selectors are immutable: a version in them would make every upgrade fail.
    for variant in Variant::ALL {
        let manifests = render_with(Env::Prod, variant, "{}\n").unwrap();
        for selector in manifests.split("matchLabels:").skip(1) {
            let block: String = selector.lines().skip(1).take_while(|l| l.starts_with("      ")).collect::<Vec<_>>().join("\n");
            assert!(!block.contains("version"), "{variant:?} selector holds a version:\n{block}");
        }
    }
}

#[test]
fn blue_green_service_follows_the_active_slot() {
    let blue = render_with(Env::Dev, Variant::Blue, "{}\n").unwrap();
    let green = render_with(Env::Dev, Variant::Green, "{}\n").unwrap();
    let live_selector = |m: &str| {
        let service =
            m.split("---").find(|doc| doc.contains("kind: Service\n") && doc.contains("\n  name: model-server\n")).unwrap().to_owned();
        service.lines().find(|l| l.contains("shipshape.dev/slot")).unwrap().trim().to_owned()
    };
    assert_eq!(live_selector(&blue), "shipshape.dev/slot: blue");
    assert_eq!(live_selector(&green), "shipshape.dev/slot: green");
}

/// The `image:` lines of rendered manifests, in order.
fn images(manifests: &str) -> Vec<String> {
    manifests.lines().filter_map(|l| l.trim().strip_prefix("image: ")).map(|i| i.trim_matches('"').to_owned()).collect()
}

#[test]
fn a_tag_with_a_recorded_digest_runs_pinned_to_it_on_every_track() {
    let stable = format!("sha256:{}", "1".repeat(64));
    let canary = format!("sha256:{}", "2".repeat(64));
    let extra = format!(
        "image:\n  tag: \"v1.0\"\ncanary:\n  enabled: true\n  image:\n    tag: \"v2.0\"\nimageDigests:\n  \"v1.0\": \"{stable}\"\n  \"v2.0\": \"{canary}\"\n"
    );
    let rendered = render_with(Env::Dev, Variant::Stable, &extra).unwrap();
    let found = images(&rendered);
    assert!(found.contains(&format!("localhost:5001/shipshape/model-server:v1.0@{stable}")), "{found:?}");
    assert!(found.contains(&format!("localhost:5001/shipshape/model-server:v2.0@{canary}")), "{found:?}");
    // A tag with no recorded digest renders as before (a release deployed before digests).
    let unpinned = render_with(Env::Dev, Variant::Stable, "image:\n  tag: \"v3\"\n").unwrap();
    assert!(images(&unpinned).contains(&"localhost:5001/shipshape/model-server:v3".to_owned()));
}

#[test]
fn schema_rejects_a_digest_that_is_not_sha256() {
    let message = rejected("imageDigests:\n  v1: latest\n");
    assert!(message.contains("imageDigests"), "{message}");
}

/// shipshape's reading of "how many replicas Helm's record gives each Deployment" (the drift
/// reports) agrees with what the chart renders, in every shape.
#[test]
fn recorded_replicas_agree_with_the_rendered_deployments() {
    let shapes = [
        "replicaCount: 3\n",
        "replicaCount: 3\ncanary:\n  enabled: true\n  replicaCount: 2\n  image:\n    tag: \"v2\"\n",
        "replicaCount: 4\nblueGreen:\n  enabled: true\n  activeSlot: green\n",
        "replicaCount: 4\nblueGreen:\n  enabled: true\n  activeSlot: blue\n  green:\n    tag: \"v2\"\n    replicaCount: 4\n",
        "replicaCount: 2\ncanary:\n  enabled: true\n  image:\n    tag: \"v2\"\n",
    ];
    for extra in shapes {
        let rendered = render_with(Env::Dev, Variant::Stable, extra).unwrap();
        let mut deployments = Vec::new();
        for doc in rendered.split("\n---") {
            if !doc.contains("\nkind: Deployment") {
                continue;
            }
            let field = |key: &str| doc.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned()).unwrap();
            deployments.push((field("  name: "), field("  replicas: ").parse::<i32>().unwrap()));
        }
        deployments.sort();
        // As Helm records them: the chart's defaults merged with the release's values.
        let values = chart::Values::of(&planned_with(extra)).unwrap();
        let mut recorded = xtask::flows::ownership::recorded_replicas("model-server", &values);
        recorded.sort();
        assert_eq!(recorded, deployments, "values:\n{extra}");
    }
}

/// The values Helm would record for dev/stable with `extra` on top (defaults merged).
fn planned_with(extra: &str) -> serde_json::Value {
    let sh = xtask::repo_shell().unwrap();
    let helm = Helm::new(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(extra.as_bytes()).unwrap();
    let mut release = chart::release_spec(Env::Dev, Variant::Stable, None);
    release.values_files.push(file.path().to_path_buf());
    helm.planned_values(&chart::chart_dir(), &release).unwrap_or_else(|e| panic!("{e:#}"))
}

/// External Secrets Operator rewrites `1h` as `1h0m0s` and so takes the field from Helm: the
/// next upgrade (a rotation's restart) then failed with a server-side apply conflict.
#[test]
fn an_external_secrets_refresh_interval_must_be_written_as_go_prints_it() {
    let external = "externalSecrets:\n  enabled: true\n  secretStoreRef:\n    name: vault\n  adminToken:\n    remoteKey: ml/token\n";
    let message = rejected(&format!("{external}  refreshInterval: 1h\n"));
    assert!(message.contains("1h0m0s") && message.contains("conflict"), "{message}");
}

/// Where signatures are required, the chart renders no tag without its digest: what runs there
/// is what was verified (issue 19). dev, which allows unsigned images, renders a bare tag.
#[test]
fn environments_that_require_signatures_refuse_a_tag_without_its_digest() {
    let sh = xtask::repo_shell().unwrap();
    let helm = Helm::new(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    for env in [Env::Staging, Env::Prod] {
        let error = match helm.template(&chart::chart_dir(), &chart::release_spec(env, Variant::Stable, Some("v9"))) {
            Ok(_) => panic!("{env:?} rendered tag v9 without a digest"),
            Err(err) => format!("{err:#}"),
        };
        assert!(error.contains("image tag v9 has no digest") && error.contains("requires signed images"), "{error}");
    }
    let dev = helm.template(&chart::chart_dir(), &chart::release_spec(Env::Dev, Variant::Stable, Some("v9"))).unwrap();
    assert!(dev.contains("model-server:v9\n"), "dev renders the tag as given");
}

/// prod spreads each Deployment's pods over the nodes, never counting a cordoned one.
#[test]
fn prod_spreads_its_pods_over_the_nodes() {
    let rendered = render_with(Env::Prod, Variant::Canary, "{}\n").unwrap();
    let deployments = rendered.split("\n---").filter(|d| d.contains("\nkind: Deployment")).collect::<Vec<_>>();
    assert_eq!(deployments.len(), 2, "stable and canary");
    for deployment in deployments {
        assert!(deployment.contains("topologyKey: kubernetes.io/hostname") && deployment.contains("whenUnsatisfiable: DoNotSchedule"));
        assert!(deployment.contains("nodeTaintsPolicy: Honor"), "a drained node does not count");
        let track = if deployment.contains("name: model-server-canary\n") { "canary" } else { "stable" };
        assert!(
            deployment.contains(&format!("              shipshape.dev/track: {track}")),
            "each track spreads on its own:\n{deployment}"
        );
    }
    assert!(!render_with(Env::Dev, Variant::Stable, "{}\n").unwrap().contains("topologySpreadConstraints"), "not on dev's one node");
}

/// staging and prod isolate their pods: the API port from the release's namespace (and the
/// clients the environment names), metrics from Prometheus, the API server's proxy (its
/// addresses read at install; offline, those the values list); egress to DNS and the
/// namespace, plus what the environment adds.
#[test]
fn staging_and_prod_isolate_their_pods_with_a_network_policy() {
    for env in [Env::Staging, Env::Prod] {
        let rendered = render_with(env, Variant::Stable, "{}\n").unwrap();
        let policy =
            rendered.split("\n---").find(|d| d.contains("\nkind: NetworkPolicy")).unwrap_or_else(|| panic!("{env:?}: no NetworkPolicy"));
        assert!(policy.contains("policyTypes: [Ingress, Egress]"), "{policy}");
        assert!(policy.contains("app.kubernetes.io/instance: model-server"), "every pod of the release: {policy}");
        assert!(policy.contains("kubernetes.io/metadata.name: monitoring"), "Prometheus scrapes: {policy}");
        assert!(policy.contains("k8s-app: kube-dns") && policy.contains("port: 53"), "DNS: {policy}");
        assert!(!policy.contains("ipBlock"), "offline, no API server address is known: {policy}");
    }
    assert!(!render_with(Env::Dev, Variant::Stable, "{}\n").unwrap().contains("kind: NetworkPolicy"), "off in dev");

    let extra = "networkPolicy:\n  apiServerAddresses: [172.18.0.3, \"fd00::3\"]\n  clients:\n    - namespaceSelector:\n        matchLabels:\n          \
                 kubernetes.io/metadata.name: ingress\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 10.9.0.0/16\n      ports:\n        - port: 5000\n";
    let rendered = render_with(Env::Prod, Variant::Stable, extra).unwrap();
    assert!(rendered.contains("cidr: 172.18.0.3/32") && rendered.contains("cidr: fd00::3/128"), "{rendered}");
    assert!(rendered.contains("kubernetes.io/metadata.name: ingress"), "the environment's clients: {rendered}");
    assert!(rendered.contains("cidr: 10.9.0.0/16") && rendered.contains("port: 5000"), "the model registry: {rendered}");
    let message = render_with(Env::Prod, Variant::Stable, "networkPolicy:\n  apiServerAddresses: [\"https://api\"]\n").unwrap_err();
    assert!(message.contains("apiServerAddresses"), "{message}");
}
