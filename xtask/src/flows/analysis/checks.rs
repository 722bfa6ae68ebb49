//! Custom canary checks as files (`deploy/analysis/*.yaml`): a named PromQL query, a threshold
//! and which way is bad, as Argo Rollouts' AnalysisTemplate and Flagger's MetricTemplate give
//! their users. They run with `canary start --prometheus`, beside the built-in checks, at every
//! step. A query that returns no data is inconclusive, never a pass.
//!
//! A query may use these placeholders, filled in per release and step:
//! `{{namespace}}`, `{{canary_pods}}` and `{{stable_pods}}` (regular expressions of pod names,
//! for `pod=~"..."`), `{{window}}` (the step's analysis window, e.g. `30s`).
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::prometheus::track_pods;
use super::Verdict;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomCheck {
    pub name: String,
    /// What it guards, for people reading the file and the reports.
    #[serde(default)]
    pub description: String,
    pub query: String,
    pub threshold: f64,
    /// Which side of the threshold fails the canary.
    pub bad: Bad,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Bad {
    /// A value above the threshold fails (error rates, latencies).
    Above,
    /// A value below the threshold fails (throughput, success rates).
    Below,
}

/// One check's outcome at one step, as journaled and shown by `canary status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    /// None: the query returned no data.
    pub value: Option<f64>,
    pub threshold: f64,
    pub bad: Bad,
    pub verdict: Verdict,
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.bad {
            Bad::Above => "above",
            Bad::Below => "below",
        };
        match self.value {
            Some(value) => write!(f, "check {}: {value:.4} (fails {side} {}): {}", self.name, self.threshold, self.verdict.word()),
            None => write!(f, "check {}: no data (fails {side} {}): inconclusive", self.name, self.threshold),
        }
    }
}

/// Every `*.yaml` in `dir`, by file name. A file that does not read as a check stops the
/// canary before it starts, naming the file.
pub fn load(dir: &Path) -> Result<Vec<CustomCheck>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading custom checks from {}", dir.display()))?;
    let mut files: Vec<_> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml")).collect();
    files.sort();
    let mut checks: Vec<CustomCheck> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let check: CustomCheck = serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not a custom check (name, query, threshold, bad: above|below)", file.display()))?;
        if checks.iter().any(|c| c.name == check.name) {
            bail!("two custom checks are named {:?} ({})", check.name, file.display());
        }
        checks.push(check);
    }
    Ok(checks)
}

/// The check's query for this release and window.
pub fn render(query: &str, namespace: &str, release_name: &str, window: Duration) -> String {
    let [(_, stable), (_, canary)] = track_pods(release_name);
    query
        .replace("{{namespace}}", namespace)
        .replace("{{canary_pods}}", &canary)
        .replace("{{stable_pods}}", &stable)
        .replace("{{window}}", &format!("{}s", window.as_secs().max(1)))
}

/// Judges one value against the check's threshold.
pub fn evaluate(check: &CustomCheck, value: Option<f64>) -> CheckResult {
    let verdict = match (value, check.bad) {
        (None, _) => Verdict::Inconclusive,
        (Some(v), Bad::Above) if v > check.threshold => Verdict::Fail,
        (Some(v), Bad::Below) if v < check.threshold => Verdict::Fail,
        _ => Verdict::Pass,
    };
    CheckResult { name: check.name.clone(), value, threshold: check.threshold, bad: check.bad, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_checks_load() {
        let checks = load(&crate::repo_root().join("deploy/analysis")).unwrap();
        assert!(!checks.is_empty());
        for check in &checks {
            let query = render(&check.query, "ns", "model-server", Duration::from_secs(30));
            assert!(!query.contains("{{"), "every placeholder is known: {query}");
        }
    }

    #[test]
    fn a_check_file_reads_and_a_wrong_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p99.yaml"),
            "name: canary-p99\nquery: |\n  histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace=\"{{namespace}}\",pod=~\"{{canary_pods}}\"}[{{window}}])))\nthreshold: 0.5\nbad: above\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a check").unwrap();
        let checks = load(dir.path()).unwrap();
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].bad, Bad::Above);
        let query = render(&checks[0].query, "prod", "model-server", Duration::from_secs(30));
        assert!(query.contains(r#"namespace="prod",pod=~"model-server-canary-[a-z0-9]+-[a-z0-9]+"}[30s]"#), "{query}");

        std::fs::write(dir.path().join("typo.yaml"), "name: x\nquery: up\nthreshold: 1\nbad: sideways\n").unwrap();
        let error = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(error.contains("typo.yaml"), "{error}");
    }

    #[test]
    fn no_data_is_inconclusive_never_a_pass() {
        let check = |bad| CustomCheck { name: "c".into(), description: String::new(), query: "q".into(), threshold: 1.0, bad };
        assert_eq!(evaluate(&check(Bad::Above), None).verdict, Verdict::Inconclusive);
        assert_eq!(evaluate(&check(Bad::Above), Some(2.0)).verdict, Verdict::Fail);
        assert_eq!(evaluate(&check(Bad::Above), Some(1.0)).verdict, Verdict::Pass);
        assert_eq!(evaluate(&check(Bad::Below), Some(0.5)).verdict, Verdict::Fail);
        assert_eq!(evaluate(&check(Bad::Below), Some(3.0)).verdict, Verdict::Pass);
        assert_eq!(evaluate(&check(Bad::Below), None).to_string(), "check c: no data (fails below 1): inconclusive");
    }
}
