//! The skeleton's own behaviour, without a cluster: every way a run ends, what the journal and
//! the Lease hold afterwards. The API is an in-memory fake behind kube's client, served through
//! `tower_test::mock::pair` as kube-rs tests its client: namespaced objects kept by path,
//! answering GET, POST (409 when it exists), PUT and DELETE as the API server does.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;

use super::{step, Ending, Flow, Run, Undo};
use crate::chart::Env;
use crate::flows::Target;
use crate::journal::{Entry, RunResult, StepStatus};

const NAMESPACE: &str = "shipshape-test";

/// Objects by API path (`/api/v1/namespaces/ns/configmaps/name`).
type Store = Arc<Mutex<BTreeMap<String, serde_json::Value>>>;

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": reason});
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

fn ok(code: StatusCode, object: &serde_json::Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(object).unwrap())).unwrap()
}

/// Answers one request against the store.
async fn answer(store: &Store, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = body.collect_bytes().await.unwrap();
    let mut objects = store.lock().unwrap();
    match parts.method.as_str() {
        "GET" => match objects.get(&path) {
            Some(object) => ok(StatusCode::OK, object),
            // A collection (secrets, for Helm's record): what the store holds under it, selectors
            // not applied (the fake keeps no object a selector would leave out).
            None if parts.uri.query().is_some_and(|q| q.contains("labelSelector")) => {
                let prefix = format!("{path}/");
                let items: Vec<&serde_json::Value> = objects.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v).collect();
                ok(StatusCode::OK, &serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
            }
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        "POST" => {
            let mut object: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let at = format!("{path}/{name}");
            if objects.contains_key(&at) {
                return status(StatusCode::CONFLICT, "AlreadyExists");
            }
            object["metadata"]["resourceVersion"] = "1".into();
            objects.insert(at, object.clone());
            ok(StatusCode::CREATED, &object)
        }
        "PUT" => {
            let mut object: serde_json::Value = serde_json::from_slice(&body).unwrap();
            object["metadata"]["resourceVersion"] = "2".into();
            objects.insert(path, object.clone());
            ok(StatusCode::OK, &object)
        }
        "DELETE" => match objects.remove(&path) {
            Some(_) => ok(StatusCode::OK, &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        other => panic!("the fake API does not answer {other} {path}"),
    }
}

/// A flow connected to the fake API, which knows namespace [`NAMESPACE`] (unless `namespace` is
/// false).
fn flow_with_fake_api(sh: &xshell::Shell, namespace: bool) -> (Flow<'_>, Store) {
    let store: Store = Default::default();
    if namespace {
        store.lock().unwrap().insert(
            format!("/api/v1/namespaces/{NAMESPACE}"),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        );
    }
    #[allow(clippy::disallowed_methods)] // the mock API server's runtime, handed to the connection
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let served = store.clone();
    runtime.spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            send.send_response(answer(&served, request).await);
        }
    });
    let client = {
        let _entered = runtime.enter();
        kube::Client::new(service, NAMESPACE)
    };
    let target = Target {
        env: Env::Dev,
        namespace: NAMESPACE.to_owned(),
        release: "model-server".to_owned(),
        kubeconfig: "/nonexistent/kubeconfig".into(),
        context: None,
    };
    (Flow::with_client(sh, target, runtime, client), store)
}

/// The journal's entries, oldest first.
fn journal(flow: &Flow) -> Vec<Entry> {
    flow.block_on(flow.journal().entries()).unwrap()
}

fn lease_held(store: &Store) -> bool {
    store.lock().unwrap().keys().any(|k| k.contains("/leases/"))
}

fn plan() -> Vec<super::Step> {
    vec![step("change", "make a change"), step("check", "check it")]
}

/// A run whose body makes a change (marked, as a Secret write is) and then fails or not.
fn body(run: &mut Run, change: bool, fail: bool) -> anyhow::Result<Ending<&'static str>> {
    run.step("change", |changes| {
        if change {
            changes.about_to_change()?;
        }
        Ok(())
    })?;
    run.step("check", |_| if fail { anyhow::bail!("the check failed") } else { Ok(Ending::Succeeded("done")) })
}

#[test]
fn a_run_that_succeeds_is_journaled_with_its_steps_and_lets_go_of_the_lease() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "deploy", "--tag v2".into(), plan()).unwrap();
    assert!(lease_held(&store), "a run holds the release's Lease");
    let outcome = body(&mut run, true, false);
    assert_eq!(run.end(outcome, Undo::NeedsAttention).unwrap(), "done");
    let entry = journal(&flow).pop().unwrap();
    assert_eq!((entry.flow.as_str(), entry.args.as_str(), entry.result), ("deploy", "--tag v2", RunResult::Succeeded));
    assert_eq!(
        entry.steps.iter().map(|s| (s.id.as_str(), s.status)).collect::<Vec<_>>(),
        [("change", StepStatus::Done), ("check", StepStatus::Done)]
    );
    assert!(entry.finished.is_some() && entry.error.is_none());
    assert!(!lease_held(&store), "released at the end");
}

#[test]
fn a_failure_before_any_change_says_nothing_was_changed_and_runs_no_undo() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "deploy", String::new(), plan()).unwrap();
    let outcome = body(&mut run, false, true);
    let undo = Undo::with("must not run", |_| panic!("an undo ran though nothing was changed"));
    let error = format!("{:#}", run.end(outcome, undo).unwrap_err());
    assert!(error.starts_with("nothing was changed") && error.contains("the check failed"), "{error}");
    let entry = journal(&flow).pop().unwrap();
    assert_eq!(entry.result, RunResult::Failed);
    assert_eq!(entry.steps[1].status, StepStatus::Failed);
    assert!(entry.steps[1].detail.contains("the check failed"));
    assert!(entry.error.unwrap().contains("the check failed"));
}

#[test]
fn a_failure_after_a_change_runs_the_undo_and_says_what_it_restored() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "rotate-secret", String::new(), plan()).unwrap();
    let outcome = body(&mut run, true, true);
    let error =
        format!("{:#}", run.end(outcome, Undo::with("put the old value back", |_| Ok("the old value is back".into()))).unwrap_err());
    assert!(error.starts_with("the old value is back") && error.contains("the check failed"), "{error}");
    let entry = journal(&flow).pop().unwrap();
    assert_eq!(entry.result, RunResult::Failed, "failed, and compensated");
    let restore = entry.steps.last().unwrap();
    assert_eq!(
        (restore.id.as_str(), restore.description.as_str(), restore.status),
        ("restore", "put the old value back", StepStatus::Compensation)
    );
    assert!(!lease_held(&store));
}

#[test]
fn an_undo_that_fails_too_needs_attention() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "deploy", String::new(), plan()).unwrap();
    let outcome = body(&mut run, true, true);
    let error = format!("{:#}", run.end(outcome, Undo::with("roll back", |_| anyhow::bail!("helm rollback refused"))).unwrap_err());
    assert!(error.contains("undoing it failed too (helm rollback refused)") && error.contains("doctor"), "{error}");
    let entry = journal(&flow).pop().unwrap();
    assert_eq!(entry.result, RunResult::FailedNeedsAttention);
    assert_eq!(entry.steps.last().unwrap().status, StepStatus::CompensationFailed);
}

#[test]
fn a_flow_that_is_itself_the_way_back_needs_attention_when_it_fails_after_a_change() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "rollback", String::new(), plan()).unwrap();
    let outcome = body(&mut run, true, true);
    assert!(format!("{:#}", run.end(outcome, Undo::NeedsAttention).unwrap_err()).contains("doctor"));
    assert_eq!(journal(&flow).pop().unwrap().result, RunResult::FailedNeedsAttention);
}

#[test]
fn a_compensation_the_flow_ran_itself_ends_the_run_by_how_it_went() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    for (undone, result) in
        [(Ok("stable v1 serves".to_owned()), RunResult::Failed), (Err(anyhow::anyhow!("abort failed")), RunResult::FailedNeedsAttention)]
    {
        let mut run = Run::begin(&flow, "canary", String::new(), plan()).unwrap();
        let outcome = body(&mut run, true, true);
        let error = format!("{:#}", run.end(outcome, Undo::Ran(undone)).unwrap_err());
        assert!(error.contains("the check failed"), "{error}");
        assert_eq!(journal(&flow).pop().unwrap().result, result);
    }
}

#[test]
fn every_ending_is_journaled_as_itself() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    type MakeEnding = fn(u8) -> Ending<u8>;
    let endings: [(MakeEnding, RunResult); 5] = [
        (Ending::Succeeded, RunResult::Succeeded),
        (Ending::Paused, RunResult::Paused),
        (Ending::Aborted, RunResult::Aborted),
        (Ending::RolledBack, RunResult::RolledBack),
        (Ending::NeedsAttention, RunResult::FailedNeedsAttention),
    ];
    for (ending, result) in endings {
        let run = Run::begin(&flow, "canary", String::new(), plan()).unwrap();
        assert_eq!(run.end(Ok(ending(7)), Undo::Nothing).unwrap(), 7, "the value reaches the caller");
        assert_eq!(journal(&flow).pop().unwrap().result, result);
    }
}

#[test]
fn a_second_run_on_the_same_release_is_refused_naming_the_holder() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let first = Run::begin(&flow, "canary", String::new(), plan()).unwrap();
    let error = format!("{:#}", Run::begin(&flow, "deploy", String::new(), plan()).err().unwrap());
    assert!(error.contains("another shipshape flow is running on this release") && error.contains(&first.entry.id), "{error}");
    first.end(Ok(Ending::Succeeded(())), Undo::Nothing).unwrap();
    assert!(Run::begin(&flow, "deploy", String::new(), plan()).is_ok(), "free again once the first ended");
}

#[test]
fn a_missing_namespace_is_said_in_words_before_anything_is_written() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, false);
    let error = format!("{:#}", Run::begin(&flow, "deploy", String::new(), plan()).err().unwrap());
    assert!(error.contains(&format!("namespace {NAMESPACE} does not exist")) && error.contains("preflight"), "{error}");
    assert!(error.contains("nothing was changed") && !error.contains("Status {"), "{error}");
    assert!(store.lock().unwrap().is_empty(), "no Lease, no journal");
}

#[test]
fn a_resumed_run_carries_on_the_same_entry_and_says_who_resumed_it() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let run = Run::begin(&flow, "canary", String::new(), plan()).unwrap();
    let id = run.entry.id.clone();
    run.end(Ok(Ending::Paused(())), Undo::Nothing).unwrap();
    let paused = journal(&flow).pop().unwrap();
    let mut run = Run::resume(&flow, paused, vec![step("check", "check it")]).unwrap();
    assert_eq!(run.entry.result, RunResult::Running);
    run.step("check", |_| Ok(())).unwrap();
    run.end(Ok(Ending::Succeeded(())), Undo::Nothing).unwrap();
    let entries = journal(&flow);
    assert_eq!(entries.len(), 1, "one entry, carried on");
    assert_eq!((entries[0].id.as_str(), entries[0].result), (id.as_str(), RunResult::Succeeded));
    assert!(entries[0].facts.keys().any(|k| k.starts_with("resumed_by")), "{:?}", entries[0].facts);
}

#[test]
fn a_step_not_in_the_plan_is_a_bug_caught_at_once() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let mut run = Run::begin(&flow, "deploy", String::new(), plan()).unwrap();
    let unplanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step("surprise", |_| Ok(()))));
    assert!(unplanned.is_err(), "a step the plan (and --dry-run) never showed must not run");
}

/// A journaled blue/green run, unfinished as a killed one is, that saw `seen` when it began.
fn interrupted_bluegreen(flow: &Flow, seen: &str) -> Entry {
    let mut entry = Entry {
        id: "20261208T010000Z-bluegreen-0001".to_owned(),
        flow: "bluegreen".to_owned(),
        result: RunResult::Running,
        ..Default::default()
    };
    entry.facts.insert("state".to_owned(), "{}".to_owned());
    entry.facts.insert(super::fence::SEEN_REVISION_FACT.to_owned(), seen.to_owned());
    flow.block_on(flow.journal().write(&entry)).unwrap();
    entry
}

#[test]
fn a_killed_run_whose_release_was_uninstalled_is_closed_by_the_next_command_that_reads_it() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    // It saw revision 4; the fake holds no Helm record: the release was uninstalled since.
    interrupted_bluegreen(&flow, "4 at 2026-12-08T00:50:00Z");
    let (read, _) = flow.latest_state::<serde_json::Value>("bluegreen", "state").unwrap().unwrap();
    assert_eq!(read.result, RunResult::Closed);
    let error = read.error.unwrap_or_default();
    assert!(error.contains("not installed any more") && error.contains("closed by"), "{error}");
    let kept = journal(&flow).pop().unwrap();
    assert_eq!((kept.result, kept.facts["closed_from"].as_str()), (RunResult::Closed, "running"), "written, not only said");
}

#[test]
fn a_killed_first_install_that_made_nothing_stays_for_resume() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    interrupted_bluegreen(&flow, "none");
    let (read, _) = flow.latest_state::<serde_json::Value>("bluegreen", "state").unwrap().unwrap();
    assert_eq!(read.result, RunResult::Running);
    assert_eq!(journal(&flow).pop().unwrap().result, RunResult::Running);
}

#[test]
fn a_run_begins_by_journaling_the_revision_it_saw() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, _) = flow_with_fake_api(&sh, true);
    let run = Run::begin(&flow, "deploy", String::new(), plan()).unwrap();
    assert_eq!(run.entry.facts.get(super::fence::SEEN_REVISION_FACT).map(String::as_str), Some("none"), "nothing installed");
    run.finish(RunResult::Succeeded, None).unwrap();
}

/// Helm's record of revision `number` of the release, as helm stores it (a Secret whose
/// `release` is base64 of the record's JSON), made by whoever `description` says.
fn helm_revision(store: &Store, number: u32, description: &str) {
    use base64::Engine;
    let record = serde_json::json!({
        "name": "model-server", "version": number,
        "info": {"last_deployed": format!("2026-12-08T01:00:{number:02}Z"), "status": "deployed", "description": description},
        "chart": {"metadata": {"name": "model-server", "version": "0.1.0"}}, "config": {}, "manifest": ""
    });
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let name = format!("sh.helm.release.v1.model-server.v{number}");
    store.lock().unwrap().insert(
        format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}"),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": {"owner": "helm", "name": "model-server"}},
            "data": {"release": encode(encode(&serde_json::to_vec(&record).unwrap()).as_bytes())}
        }),
    );
}

/// Runs a plan whose one step writes (fenced), after `meanwhile` changed what the fake holds.
fn a_write_after(store: &Store, flow: &Flow, meanwhile: impl FnOnce(&Store, &str)) -> (anyhow::Result<&'static str>, Entry) {
    let mut run = Run::begin(flow, "deploy", String::new(), plan()).unwrap();
    meanwhile(store, &run.entry.id.clone());
    let outcome = body(&mut run, true, false);
    let ended = run.end(outcome, Undo::with("must not run", |_| panic!("an undo ran over someone else's change")));
    (ended, journal(flow).pop().unwrap())
}

#[test]
fn a_revision_made_by_someone_else_mid_flow_stops_the_run_before_its_next_write_and_undoes_nothing() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, true);
    helm_revision(&store, 4, "Upgrade complete");
    let (ended, entry) = a_write_after(&store, &flow, |store, _| helm_revision(store, 5, "Rollback to 3"));
    let error = format!("{:#}", ended.unwrap_err());
    assert!(error.contains("stopped before changing the release again: Helm revision 5 was made by someone else"), "{error}");
    assert!(error.contains("(Rollback to 3)") && error.contains("left in place"), "{error}");
    assert_eq!(entry.result, RunResult::Closed, "not to be resumed: its plan no longer describes the release");
    assert!(entry.facts["fenced"].contains("revision 5"), "{entry:#?}");
    assert_eq!(entry.steps[0].status, StepStatus::Failed, "the step that would have written");
    assert!(!lease_held(&store), "the Lease is let go");
}

#[test]
fn a_run_writes_over_its_own_revisions() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, true);
    helm_revision(&store, 4, "Upgrade complete");
    let (ended, entry) = a_write_after(&store, &flow, |store, id| helm_revision(store, 5, &super::fence::stamp("shipshape deploy v2", id)));
    assert_eq!(ended.unwrap(), "done");
    assert_eq!(entry.result, RunResult::Succeeded);
}

#[test]
fn a_run_whose_lease_is_gone_writes_nothing_more() {
    let sh = xshell::Shell::new().unwrap();
    let (flow, store) = flow_with_fake_api(&sh, true);
    let (ended, entry) = a_write_after(&store, &flow, |store, _| store.lock().unwrap().retain(|k, _| !k.contains("/leases/")));
    let error = format!("{:#}", ended.unwrap_err());
    assert!(error.contains("Lease shipshape-lock-model-server is gone"), "{error}");
    assert_eq!(entry.result, RunResult::Closed);
}
