//! `cargo xtask environments`: every environment side by side, read from its own cluster (the
//! context its values name): which version and digest runs, the Helm revision, and the latest
//! flow. What a release manager looks at before `deploy --env prod --from staging`.
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Flow, Target};
use crate::chart::Env;
use crate::journal::RunResult;
use crate::report::{self, Outcome, Output};

/// One environment is given this long to answer (an unreachable cluster is a row, not a hang).
const ENVIRONMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// One environment as its cluster has it.
#[derive(Serialize, Debug, Default)]
pub struct Row {
    pub env: String,
    pub context: String,
    pub namespace: String,
    /// Why it could not be read (no such context, unreachable), if so.
    pub unreadable: Option<String>,
    pub revision: Option<u32>,
    pub status: String,
    pub image: String,
    pub latest_flow: String,
    pub latest_result: Option<RunResult>,
}

/// Reads every environment; Warn when one could not be read.
/// `namespaces`: environments whose release is not in their own namespace.
pub fn show(sh: &xshell::Shell, kubeconfig: Option<&std::path::Path>, namespaces: &[(Env, String)], output: Output) -> Result<Outcome> {
    let namespace_of = |env: Env| namespaces.iter().find(|(e, _)| *e == env).map(|(_, n)| n.clone());
    let rows: Vec<Row> = Env::ALL.iter().map(|env| read(sh, *env, namespace_of(*env), kubeconfig)).collect();
    match output {
        Output::Json => report::print_json(&rows)?,
        Output::Human => print!("{}", table(&rows)),
    }
    Ok(if rows.iter().any(|r| r.unreadable.is_some()) { Outcome::Warn } else { Outcome::Pass })
}

fn read(sh: &xshell::Shell, env: Env, namespace: Option<String>, kubeconfig: Option<&std::path::Path>) -> Row {
    let mut row = Row { env: env.name().to_owned(), namespace: namespace.clone().unwrap_or_else(|| env.namespace()), ..Default::default() };
    let result = (|| -> Result<()> {
        let target = Target::new(env, namespace, kubeconfig, None)?;
        row.context = target.context.clone().unwrap_or_else(|| "(current)".to_owned());
        let flow = Flow::connect(sh, target)?;
        let (record, entries) = flow.block_on(async {
            tokio::time::timeout(ENVIRONMENT_TIMEOUT, async {
                let record = crate::helm::record::ReleaseRecord::fetch(flow.client(), &flow.target.namespace, &flow.target.release).await?;
                let entries = flow.journal().entries().await?;
                anyhow::Ok((record, entries))
            })
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {} s", ENVIRONMENT_TIMEOUT.as_secs()))?
        })?;
        if let Some(current) = record.current() {
            row.revision = Some(current.revision);
            row.status = current.status.clone();
            row.image = record.stable_image().unwrap_or_default();
        } else {
            row.status = "not installed".to_owned();
        }
        if let Some(last) = entries.last() {
            row.latest_flow = format!("{} {} by {} ({})", last.flow, last.result, last.actor, last.started);
            row.latest_result = Some(last.result);
        }
        Ok(())
    })();
    if let Err(err) = result {
        row.unreadable = Some(format!("{err:#}"));
    }
    row
}

/// The rows as a table, one environment per line (an unreadable one says why).
pub fn table(rows: &[Row]) -> String {
    let mut out = format!("{:<8} {:<16} {:>8}  {:<12} {:<60} {}\n", "env", "context", "revision", "status", "image", "latest flow");
    for row in rows {
        match &row.unreadable {
            Some(why) => out.push_str(&format!("{:<8} {:<16} {:>8}  cannot be read: {why}\n", row.env, row.context, "-")),
            None => out.push_str(&format!(
                "{:<8} {:<16} {:>8}  {:<12} {:<60} {}\n",
                row.env,
                row.context,
                row.revision.map(|r| r.to_string()).unwrap_or_else(|| "-".to_owned()),
                row.status,
                row.image,
                if row.latest_flow.is_empty() { "none" } else { &row.latest_flow }
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_is_a_row_and_an_unreadable_one_says_why() {
        let rows = [
            Row {
                env: "staging".into(),
                context: "staging-cluster".into(),
                revision: Some(4),
                status: "deployed".into(),
                image: "r/m:v2@sha256:aa".into(),
                latest_flow: "deploy succeeded by ci".into(),
                ..Default::default()
            },
            Row {
                env: "prod".into(),
                context: "prod-cluster".into(),
                unreadable: Some("no context prod-cluster".into()),
                ..Default::default()
            },
            Row { env: "dev".into(), context: "(current)".into(), status: "not installed".into(), ..Default::default() },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with("staging") && lines[1].contains("r/m:v2@sha256:aa") && lines[1].contains("       4  deployed"),
            "{text}"
        );
        assert!(lines[2].contains("cannot be read: no context prod-cluster"), "{text}");
        assert!(lines[3].contains("not installed") && lines[3].ends_with("none"), "{text}");
    }
}
