//! What a change would do to the release's objects, before it is made (`deploy --dry-run`), as
//! the helm-diff plugin shows it: Helm's record of the live release against what the chart
//! renders now, object by object. Secrets' data is never shown.
use similar::{ChangeTag, TextDiff};

/// One object of a manifest: `Kind/name`, and its YAML.
fn objects(manifest: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for doc in manifest.split("\n---") {
        let doc = doc.trim_start_matches("---").trim_matches('\n');
        // Hooks (the `helm test` pod) are not part of the release's objects.
        if doc.contains("helm.sh/hook") {
            continue;
        }
        let Some(kind) = doc.lines().find_map(|l| l.strip_prefix("kind: ")) else { continue };
        let mut in_metadata = false;
        let mut name = "";
        for line in doc.lines() {
            if line == "metadata:" {
                in_metadata = true;
            } else if in_metadata && !line.starts_with(' ') {
                in_metadata = false;
            } else if let Some(n) = line.strip_prefix("  name: ").filter(|_| in_metadata) {
                name = n.trim().trim_matches('"');
            }
        }
        let body: String = doc.lines().filter(|l| !l.starts_with("# Source:")).map(|l| format!("{l}\n")).collect();
        found.push((format!("{kind}/{name}"), if kind == "Secret" { hide_secret_data(&body) } else { body }));
    }
    found
}

/// A Secret's `data` and `stringData` values replaced: a diff shows that a key changed, not its value.
fn hide_secret_data(yaml: &str) -> String {
    let mut hiding = false;
    yaml.lines()
        .map(|line| {
            if line == "data:" || line == "stringData:" {
                hiding = true;
                return format!("{line}\n");
            }
            if hiding && line.starts_with("  ") {
                let key = line.split(':').next().unwrap_or(line);
                return format!("{key}: (hidden)\n");
            }
            hiding = false;
            format!("{line}\n")
        })
        .collect()
}

/// The difference, object by object: `+ Kind/name` (new), `- Kind/name` (removed), `~ Kind/name`
/// with its changed lines and two lines of context. Empty when nothing would change.
pub fn describe(live: &str, planned: &str) -> String {
    let (live, planned) = (objects(live), objects(planned));
    let mut out = String::new();
    for (id, new) in &planned {
        match live.iter().find(|(other, _)| other == id) {
            None => out.push_str(&format!("+ {id} (new)\n")),
            Some((_, old)) if old == new => {}
            Some((_, old)) => {
                out.push_str(&format!("~ {id}\n"));
                let diff = TextDiff::from_lines(old.as_str(), new.as_str());
                for group in diff.grouped_ops(2) {
                    for op in group {
                        for change in diff.iter_changes(&op) {
                            let sign = match change.tag() {
                                ChangeTag::Delete => "-",
                                ChangeTag::Insert => "+",
                                ChangeTag::Equal => " ",
                            };
                            out.push_str(&format!("    {sign} {}", change.value()));
                        }
                    }
                    out.push_str("    ...\n");
                }
            }
        }
    }
    for (id, _) in live.iter().filter(|(id, _)| !planned.iter().any(|(other, _)| other == id)) {
        out.push_str(&format!("- {id} (removed)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "---\n# Source: c/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: model-server\n  labels:\n    a: b\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - image: r:v1\n---\nkind: Service\nmetadata:\n  name: model-server\nspec:\n  port: 80\n---\nkind: Secret\nmetadata:\n  name: s\ndata:\n  token: c2VjcmV0\n";

    #[test]
    fn changed_objects_show_their_changed_lines() {
        let planned = LIVE.replace("replicas: 1", "replicas: 2").replace("r:v1", "r:v2").replace("c2VjcmV0", "bmV3");
        let diff = describe(LIVE, &planned);
        assert!(diff.contains("~ Deployment/model-server\n"), "{diff}");
        assert!(diff.contains("    -   replicas: 1\n") && diff.contains("    +   replicas: 2\n"), "{diff}");
        assert!(!diff.contains("Service/model-server"), "unchanged objects are not listed: {diff}");
        assert!(!diff.contains("c2VjcmV0") && !diff.contains("bmV3"), "Secret data is never shown: {diff}");
    }

    #[test]
    fn added_and_removed_objects_are_named() {
        let planned = format!("{LIVE}---\nkind: PodDisruptionBudget\nmetadata:\n  name: model-server\n");
        assert!(describe(LIVE, &planned).contains("+ PodDisruptionBudget/model-server (new)"));
        assert!(describe(&planned, LIVE).contains("- PodDisruptionBudget/model-server (removed)"));
        assert_eq!(describe(LIVE, LIVE), "");
    }
}
