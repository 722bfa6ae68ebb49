//! Whether the release is still the one a run knows: before each of the run's writes (the fence),
//! and for a run left unfinished (closed once its release is gone).
//!
//! The fence: every write a run makes first checks that the run still holds the release's
//! Lease and that the release's latest Helm revision is one the run made or the one it saw when
//! it began. A revision made by anyone else mid-flow (a colleague's `helm rollback`, another
//! tool) stops the run at once, with that change left in place: no undo overwrites it (seen: a
//! hand `helm rollback` during a blue/green hold, after which the flow made a revision that
//! "scaled green down", scaling nothing, and waited 300 s for green's serving pods to go).
//!
//! When an unfinished run no longer describes its release. A run killed mid-flow stays
//! "running" (or paused, or failed-needs-attention) in the journal, and the commands that carry
//! runs on (`bluegreen resume`, `canary resume`) or refuse to start beside one (`bluegreen
//! start`) read it. If meanwhile the release was uninstalled, installed again, or given another
//! shape by hand, there is nothing of that run left to carry on or undo, and every way out it
//! names fails (seen: a killed blue/green switch, the release reinstalled; `bluegreen start`
//! refused for the unfinished run, `bluegreen rollback` for a release not blue/green, `bluegreen
//! resume` found no green pods). Such a run is closed, with what was found.
//!
//! How a run knows its release: it journals the latest Helm revision it saw when it began
//! ([`SEEN_REVISION_FACT`]), and every revision it makes carries its journal id in Helm's
//! description ([`stamp`]). The release is still the run's while one of Helm's kept revisions is
//! one of those. Uninstalling deletes Helm's history, so a release installed again has none.
use crate::helm::Revision;
use crate::journal::Entry;

/// The journal fact holding the latest Helm revision a run saw when it began (or resumed).
pub const SEEN_REVISION_FACT: &str = "seen_revision";

/// What [`SEEN_REVISION_FACT`] holds for a release's latest revision: its number and when it
/// was made (a release installed again numbers from 1 anew, at another time).
pub fn seen(latest: Option<&Revision>) -> String {
    match latest {
        Some(r) => format!("{} at {}", r.revision, r.updated),
        None => "none".to_owned(),
    }
}

/// Helm's description of a revision run `id` makes: the flow's words and the run's id, the id
/// kept whole within the 250 characters helm takes.
pub fn stamp(description: &str, id: &str) -> String {
    let mark = format!(" [run {id}]");
    let room = 250usize.saturating_sub(mark.chars().count());
    let words: String = description.chars().take(room).collect();
    format!("{words}{mark}")
}

fn made_by(revision: &Revision, id: &str) -> bool {
    revision.description.contains(&format!("[run {id}]"))
}

/// A run stopped by the fence: someone else changed the release, or the run cannot show it still
/// holds the Lease. Its undo does not run (it would overwrite what the other made).
#[derive(Debug)]
pub struct Fenced(pub String);

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped before changing the release again: {}", self.0)
    }
}

impl std::error::Error for Fenced {}

/// The fence that stopped `err`, if one did.
pub fn fenced(err: &anyhow::Error) -> Option<&Fenced> {
    err.chain().find_map(|e| e.downcast_ref::<Fenced>())
}

/// Why run `id`, which saw `seen` when it began, may not write to a release whose latest
/// revision is `latest` (None: it may).
pub fn made_by_someone_else(latest: Option<&Revision>, id: &str, seen: &str) -> Option<String> {
    match latest {
        None if seen == "none" => None,
        None => Some(format!("the release was uninstalled mid-flow (this run saw revision {seen} when it began)")),
        Some(r) if made_by(r, id) || self::seen(Some(r)) == seen => None,
        Some(r) => Some(format!(
            "Helm revision {} was made by someone else at {} ({}), after this run began (it saw {})",
            r.revision,
            r.updated,
            r.description.lines().next().unwrap_or_default(),
            if seen == "none" { "no release".to_owned() } else { format!("revision {seen}") }
        )),
    }
}

/// Why unfinished run `entry` no longer describes the release whose Helm history is `history`
/// and whose values (latest revision) say `blue_green` (None: it still does, or it cannot be
/// told). A run some live process holds is never judged here (the caller asks the Lease).
pub fn no_longer_matches(entry: &Entry, history: &[Revision], blue_green: bool) -> Option<String> {
    if !entry.result.is_unfinished() {
        return None;
    }
    let saw = entry.facts.get(SEEN_REVISION_FACT)?;
    let knows = |r: &Revision| made_by(r, &entry.id) || seen(Some(r)) == *saw;
    if history.is_empty() {
        // Began on no release, and there is none: a first install not yet made (resume makes it).
        if saw == "none" {
            return None;
        }
        return Some(format!("the release is not installed any more (uninstalled after run {} began)", entry.id));
    }
    if saw != "none" && !history.iter().any(knows) {
        let first = &history[0];
        return Some(format!(
            "the release is not the one run {} worked on: none of its Helm revisions is one the run saw or made (it saw revision \
             {saw}; the release's history starts at revision {}, made {}: installed again since)",
            entry.id, first.revision, first.updated
        ));
    }
    if entry.flow == "bluegreen" && !blue_green {
        let latest = history.last().expect("history is not empty");
        return Some(format!(
            "the release no longer runs blue/green: Helm revision {} ({}) gave it another shape after run {} began",
            latest.revision,
            latest.description.lines().next().unwrap_or_default(),
            entry.id
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::RunResult;

    fn revision(number: u32, updated: &str, description: &str) -> Revision {
        Revision {
            revision: number,
            updated: updated.to_owned(),
            status: "deployed".to_owned(),
            chart: "model-server-0.1.0".to_owned(),
            app_version: String::new(),
            description: description.to_owned(),
        }
    }

    fn run(flow: &str, result: RunResult, saw: &str) -> Entry {
        let mut entry = Entry { id: "20261208T010000Z-bluegreen-0001".to_owned(), flow: flow.to_owned(), result, ..Default::default() };
        entry.facts.insert(SEEN_REVISION_FACT.to_owned(), saw.to_owned());
        entry
    }

    #[test]
    fn the_fence_lets_a_run_write_over_what_it_saw_or_made_and_nothing_else() {
        let id = "20261208T010000Z-bluegreen-0001";
        let saw = revision(4, "2026-12-08T00:50:00Z", "Upgrade complete");
        let ours = revision(5, "2026-12-08T01:00:10Z", &stamp("shipshape bluegreen v4: switch live to green", id));
        assert_eq!(made_by_someone_else(Some(&saw), id, "4 at 2026-12-08T00:50:00Z"), None, "what it saw");
        assert_eq!(made_by_someone_else(Some(&ours), id, "4 at 2026-12-08T00:50:00Z"), None, "what it made");
        assert_eq!(made_by_someone_else(None, id, "none"), None, "a first install");
        // A colleague's `helm rollback 4` during the hold.
        let theirs = revision(6, "2026-12-08T01:00:40Z", "Rollback to 4");
        let said = made_by_someone_else(Some(&theirs), id, "4 at 2026-12-08T00:50:00Z").unwrap();
        assert!(said.contains("revision 6 was made by someone else at 2026-12-08T01:00:40Z (Rollback to 4)"), "{said}");
        // Another run's revision is someone else's too.
        let other = revision(6, "2026-12-08T01:00:40Z", &stamp("shipshape deploy v5", "20261208T010030Z-deploy-0002"));
        assert!(made_by_someone_else(Some(&other), id, "4 at 2026-12-08T00:50:00Z").is_some());
        let said = made_by_someone_else(None, id, "4 at 2026-12-08T00:50:00Z").unwrap();
        assert!(said.contains("uninstalled mid-flow"), "{said}");
        let said = made_by_someone_else(Some(&saw), id, "none").unwrap();
        assert!(said.contains("it saw no release"), "installed by someone else meanwhile: {said}");
    }

    #[test]
    fn a_stamp_keeps_the_run_id_whole_however_long_the_words() {
        let stamped = stamp(&"x".repeat(400), "20261208T010000Z-deploy-00ff");
        assert!(stamped.chars().count() <= 250 && stamped.ends_with(" [run 20261208T010000Z-deploy-00ff]"), "{stamped}");
        assert_eq!(stamp("shipshape canary v2: step 1", "id"), "shipshape canary v2: step 1 [run id]");
    }

    #[test]
    fn a_run_matches_its_release_while_helm_keeps_a_revision_it_saw_or_made() {
        let id = "20261208T010000Z-bluegreen-0001";
        let history = vec![
            revision(3, "2026-12-08T00:50:00Z", "Upgrade complete"),
            revision(4, "2026-12-08T01:00:10Z", &stamp("shipshape bluegreen v3: green up", id)),
        ];
        for result in [RunResult::Running, RunResult::Paused, RunResult::FailedNeedsAttention] {
            assert_eq!(no_longer_matches(&run("bluegreen", result, "3 at 2026-12-08T00:50:00Z"), &history, true), None, "{result}");
        }
        // Killed while helm wrote its revision: the revision names it.
        assert_eq!(no_longer_matches(&run("bluegreen", RunResult::Running, "2 at 2026-12-08T00:40:00Z"), &history[1..], true), None);
        // A hand change after it (helm rollback by hand) is the canary's and blue/green's own
        // business (they refuse to go on, and abort or roll back): the release is still theirs.
        let mut handled = history.clone();
        handled.push(revision(5, "2026-12-08T01:02:00Z", "Rollback to 3"));
        assert_eq!(no_longer_matches(&run("bluegreen", RunResult::Running, "3 at 2026-12-08T00:50:00Z"), &handled, true), None);
    }

    #[test]
    fn an_uninstalled_or_reinstalled_release_or_another_shape_closes_the_run() {
        let saw = "4 at 2026-12-08T00:50:00Z";
        let said = no_longer_matches(&run("bluegreen", RunResult::Running, saw), &[], true).unwrap();
        assert!(said.contains("not installed any more"), "{said}");
        // Installed again: numbering starts anew, at another time.
        let again = vec![revision(1, "2026-12-08T01:10:00Z", "Install complete")];
        let said = no_longer_matches(&run("bluegreen", RunResult::Running, saw), &again, true).unwrap();
        assert!(said.contains("installed again") && said.contains("revision 1, made 2026-12-08T01:10:00Z"), "{said}");
        // Same number, other time: still another release.
        let same_number = vec![revision(4, "2026-12-08T01:10:00Z", "Install complete")];
        assert!(no_longer_matches(&run("canary", RunResult::Paused, saw), &same_number, false).is_some());
        // The standard shape under a blue/green run.
        let standard = vec![revision(4, "2026-12-08T00:50:00Z", "x"), revision(5, "2026-12-08T01:05:00Z", "Upgrade complete")];
        let said = no_longer_matches(&run("bluegreen", RunResult::Running, saw), &standard, false).unwrap();
        assert!(said.contains("no longer runs blue/green") && said.contains("revision 5 (Upgrade complete)"), "{said}");
        assert_eq!(no_longer_matches(&run("canary", RunResult::Running, saw), &standard, false), None, "a canary has no shape of its own");
    }

    #[test]
    fn finished_runs_runs_without_the_fact_and_runs_that_began_on_nothing_are_left_as_they_are() {
        let again = vec![revision(1, "2026-12-08T01:10:00Z", "Install complete")];
        for result in [RunResult::Succeeded, RunResult::Failed, RunResult::Aborted, RunResult::RolledBack, RunResult::Closed] {
            assert_eq!(no_longer_matches(&run("bluegreen", result, "4 at 2026-12-08T00:50:00Z"), &again, true), None, "{result}");
        }
        let mut older = run("bluegreen", RunResult::Running, "");
        older.facts.clear();
        assert_eq!(no_longer_matches(&older, &again, true), None, "journals from before the fact: no judgement");
        // A first install killed before helm ran: nothing installed, nothing made.
        assert_eq!(no_longer_matches(&run("bluegreen", RunResult::Running, "none"), &[], true), None);
    }
}
