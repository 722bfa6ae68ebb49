//! What each flow did, kept in the cluster so that any machine can see it (`status`) and carry
//! on from it: ConfigMap `shipshape-journal-<release>` in the release's namespace, one key per
//! run. Keys start with the run's start time, so they sort in time order. Nothing secret is ever
//! written here: flows record names, tags, revisions and outcomes.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use serde::{Deserialize, Serialize};

/// Runs kept per release; older ones are dropped when a new run is written.
const KEEP: usize = 40;

/// How a run ended, or that it has not. The journal keeps the kebab-case word
/// (`failed-needs-attention`), as journals already in clusters hold it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Under way, or its process died (no live holder of the release's Lease).
    #[default]
    Running,
    Succeeded,
    /// Failed, and compensated: the stable version serves as before.
    Failed,
    /// Failed, and undoing it failed too: a person must look (`doctor`).
    FailedNeedsAttention,
    /// Stopped on purpose, to be carried on (a canary at its gate, or without evidence).
    Paused,
    /// Stopped on purpose by the person running it (a canary aborted at the gate).
    Aborted,
    /// An unfinished flow undone (`bluegreen rollback` of a switch that never switched).
    RolledBack,
    /// Unfinished, and closed without going on: the release it worked on is no longer the one it
    /// left (uninstalled, installed again, another shape, or changed by someone else mid-flow,
    /// which stopped it at its next write), so there is nothing of it to carry on or undo
    /// (`flows/run/fence.rs`; the entry's error says what was found).
    Closed,
}

impl RunResult {
    pub fn word(self) -> &'static str {
        match self {
            RunResult::Running => "running",
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::FailedNeedsAttention => "failed-needs-attention",
            RunResult::Paused => "paused",
            RunResult::Aborted => "aborted",
            RunResult::RolledBack => "rolled-back",
            RunResult::Closed => "closed",
        }
    }

    /// The run has ended, one way or the other, and holds nothing.
    pub fn is_final(self) -> bool {
        !matches!(self, RunResult::Running | RunResult::Paused)
    }

    /// The run may still be carried on or undone by a later command (it holds the release's
    /// story: a resume, a rollback or a person picks it up).
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunResult::Running | RunResult::Paused | RunResult::FailedNeedsAttention)
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Where one step of a run is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    #[default]
    Running,
    Done,
    Failed,
    /// A step that undid earlier ones after a failure.
    Compensation,
    CompensationFailed,
}

impl StepStatus {
    pub fn word(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Compensation => "compensation",
            StepStatus::CompensationFailed => "compensation-failed",
        }
    }
}

/// One run of one flow.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Entry {
    pub id: String,
    pub flow: String,
    /// The command line's meaning (no secrets: flows never take secrets as arguments).
    pub args: String,
    pub actor: String,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    pub result: RunResult,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// What the flow found and decided: from/to tag, revisions, findings.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct StepRecord {
    pub id: String,
    pub description: String,
    pub status: StepStatus,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub seconds: f64,
}

pub struct Journal {
    api: Api<ConfigMap>,
    name: String,
}

impl Journal {
    pub fn new(client: &kube::Client, namespace: &str, release: &str) -> Journal {
        Journal { api: Api::namespaced(client.clone(), namespace), name: format!("shipshape-journal-{release}") }
    }

    /// Writes (or rewrites) one run. Optimistic concurrency: on a conflict, read again and retry.
    pub async fn write(&self, entry: &Entry) -> Result<()> {
        let value = serde_json::to_string(entry)?;
        for _ in 0..5 {
            let result = match self.api.get_opt(&self.name).await? {
                None => {
                    let map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "shipshape".to_owned())])),
                            ..Default::default()
                        },
                        data: Some(BTreeMap::from([(entry.id.clone(), value.clone())])),
                        ..Default::default()
                    };
                    self.api.create(&PostParams::default(), &map).await.map(drop)
                }
                Some(mut map) => {
                    let data = map.data.get_or_insert_with(Default::default);
                    data.insert(entry.id.clone(), value.clone());
                    while data.len() > KEEP {
                        let oldest = data.keys().next().cloned().expect("not empty");
                        data.remove(&oldest);
                    }
                    self.api.replace(&self.name, &PostParams::default(), &map).await.map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return Err(err).with_context(|| format!("writing journal ConfigMap {}", self.name)),
            }
        }
        anyhow::bail!("writing journal ConfigMap {}: kept conflicting with other writers", self.name)
    }

    /// Every run kept, oldest first. An entry that does not read (edited by hand, written by a
    /// newer shipshape) is skipped and named: one bad entry must not stop every command that reads
    /// the journal, the ones that would repair the release included.
    pub async fn entries(&self) -> Result<Vec<Entry>> {
        let Some(map) = self.api.get_opt(&self.name).await.with_context(|| format!("reading journal ConfigMap {}", self.name))? else {
            return Ok(Vec::new());
        };
        let (entries, unread) = read_entries(map.data.unwrap_or_default());
        for (key, err) in unread {
            eprintln!("note: journal ConfigMap {} entry {key} does not read ({err}): skipped", self.name);
        }
        Ok(entries)
    }
}

/// The entries that read, in key order, and each key that does not with why.
fn read_entries(data: BTreeMap<String, String>) -> (Vec<Entry>, Vec<(String, String)>) {
    let (mut entries, mut unread) = (Vec::new(), Vec::new());
    for (key, value) in data {
        match serde_json::from_str(&value) {
            Ok(entry) => entries.push(entry),
            Err(err) => unread.push((key, err.to_string())),
        }
    }
    (entries, unread)
}

/// Who is running this: the CI job when in GitHub Actions, else user@host.
pub fn actor() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(actor), Some(server), Some(repo), Some(run)) =
        (var("GITHUB_ACTOR"), var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID"))
    {
        return format!("{actor} via {server}/{repo}/actions/runs/{run}");
    }
    let user = var("USER").or_else(|| var("LOGNAME")).or_else(user_of_this_process).unwrap_or_else(|| "unknown".to_owned());
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{user}@{host}")
}

/// The login name of this process's user, from /etc/passwd (containers often set no USER).
fn user_of_this_process() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().map(|line| line.split(':').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == uid).map(|f| f[0].to_owned())
}

/// Now, as RFC 3339 UTC to the second.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals written before these types were typed hold the same words: they still read.
    #[test]
    fn entries_written_as_words_read_as_types_and_write_the_same_words() {
        let written = r#"{"id":"x","flow":"canary","args":"","actor":"a@h","started":"2026-12-01T00:00:00Z","result":"failed-needs-attention",
            "steps":[{"id":"abort","description":"d","status":"compensation-failed","detail":"","seconds":1.0}]}"#;
        let entry: Entry = serde_json::from_str(written).unwrap();
        assert_eq!(entry.result, RunResult::FailedNeedsAttention);
        assert_eq!(entry.steps[0].status, StepStatus::CompensationFailed);
        let again = serde_json::to_value(&entry).unwrap();
        assert_eq!(again["result"], "failed-needs-attention");
        assert_eq!(again["steps"][0]["status"], "compensation-failed");
        for result in ["running", "succeeded", "failed", "paused", "aborted", "rolled-back", "closed"] {
            let parsed: RunResult = serde_json::from_value(serde_json::json!(result)).unwrap();
            assert_eq!(parsed.word(), result);
        }
        assert!(serde_json::from_value::<RunResult>(serde_json::json!("exploded")).is_err(), "an unknown word is an error, not a guess");
    }

    #[test]
    fn an_entry_that_does_not_read_is_skipped_and_named_and_the_others_read() {
        let good = r#"{"id":"b","flow":"deploy","args":"","actor":"a@h","started":"2026-12-01T00:00:00Z","result":"succeeded"}"#;
        let data = BTreeMap::from([
            ("a".to_owned(), "{not json".to_owned()),
            ("b".to_owned(), good.to_owned()),
            ("c".to_owned(), good.replace("succeeded", "exploded")),
        ]);
        let (entries, unread) = read_entries(data);
        assert_eq!(entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(unread.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert!(unread[1].1.contains("exploded"), "the reason is said: {unread:?}");
    }
}
