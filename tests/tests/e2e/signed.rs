//! Supply chain: a signed release with its provenance runs; an image that cannot prove where it
//! came from is refused before anything changes, and stable keeps serving.
use std::path::PathBuf;
use std::sync::OnceLock;

use xtask::cli::{Approval, CanaryStart, SignatureArgs};
use xtask::cluster::{app_images, docker::Docker, registry};
use xtask::flows::canary::{self, Phase};
use xtask::flows::{deploy, release::ReleaseState, Flow};

use crate::fixture::{self, failure, image, unpinned, LoadGenerator, OrPanic, TestNamespace};

/// Two key pairs: the environment's, and another one.
struct Keys {
    _dir: tempfile::TempDir,
    ours: (PathBuf, PathBuf),
    theirs: (PathBuf, PathBuf),
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // The password reaches cosign through its environment only (the same for every test).
        std::env::set_var("COSIGN_PASSWORD", "e2e-not-a-secret");
        let sh = xtask::repo_shell().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pair = |name: &str| {
            let (private, public) = (dir.path().join(format!("{name}.key")), dir.path().join(format!("{name}.pub")));
            xtask::signing::init_keys(&sh, &private, &public).or_panic();
            (private, public)
        };
        let ours = pair("ours");
        let theirs = pair("theirs");
        Keys { _dir: dir, ours, theirs }
    })
}

/// A release of this checkout under `tag`, signed with `key`.
fn release(tag: &str, key: &std::path::Path) -> String {
    fixture::shared();
    let sh = xtask::repo_shell().unwrap();
    let pinned = xtask::signing::release(&sh, tag, registry::HOST, key).or_panic();
    pinned.reference()
}

fn requiring_our_signature() -> SignatureArgs {
    SignatureArgs { public_key: Some(keys().ours.1.clone()), require_signature: true, insecure_skip_signature: false }
}

fn stable_image(flow: &Flow) -> String {
    let state = ReleaseState::read(flow).or_panic();
    unpinned(&state.stable_image().unwrap())
}

#[test]
fn a_signed_release_is_verified_then_promoted_as_a_canary() {
    let shared = fixture::shared();
    let tag = format!("{}-signed", shared.v1);
    let released = release(&tag, &keys().ours.0);
    let ns = TestNamespace::new("signed-canary");
    let flow = fixture::stable_at(&ns, &shared.v1);
    let load = LoadGenerator::start(&ns);

    let args = CanaryStart {
        target: ns.args(),
        signature: requiring_our_signature(),
        tag: tag.clone(),
        steps: vec![50],
        analysis_seconds: 8,
        min_requests: 20,
        max_error_rate: 0.01,
        max_latency_ratio: 3.0,
        approval: Some(Approval::Approved),
        prometheus: None,
        dry_run: false,
    };
    let state = canary::start_canary(&flow, &args).or_panic();
    assert_eq!(state.phase, Phase::Promoted, "{state:#?}");
    let live = ReleaseState::read(&flow).or_panic().stable_image().unwrap();
    assert_eq!(live, released, "what runs is the digest that was verified");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(run.facts["signature"].contains("is signed with") && run.facts["signature"].contains("provenance"), "{:#?}", run.facts);
    assert_eq!(load.stats().failed, 0);
}

#[test]
fn unsigned_other_keys_and_moved_tags_are_refused_before_any_change() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("signed-refusals");
    let mut flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    flow.signature = requiring_our_signature();
    let revisions = || ReleaseState::read(&flow).or_panic().history.len();
    let before = revisions();

    // Unsigned.
    let error = failure(deploy::deploy(&flow, &shared.v2, false));
    assert!(error.contains("cannot be deployed here") && error.contains("signature"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");

    // Signed, but with another key.
    let theirs = format!("{}-theirs", shared.v1);
    release(&theirs, &keys().theirs.0);
    let error = failure(deploy::deploy(&flow, &theirs, false));
    assert!(error.contains("cannot be deployed here"), "{error}");

    // Signed with ours, then the tag moved to other content.
    let moved = format!("{}-moved", shared.v1);
    release(&moved, &keys().ours.0);
    let sh = xtask::repo_shell().unwrap();
    let docker = Docker::connect(&sh).unwrap();
    let other = app_images::in_registry(&format!("{}:{}", app_images::MODEL_SERVER_REPOSITORY, shared.v2), registry::HOST);
    let log = tempfile::NamedTempFile::new().unwrap();
    docker
        .tag(&other, &app_images::in_registry(&format!("{}:{moved}", app_images::MODEL_SERVER_REPOSITORY), registry::HOST), log.path())
        .unwrap();
    docker.push(&app_images::in_registry(&format!("{}:{moved}", app_images::MODEL_SERVER_REPOSITORY), registry::HOST), log.path()).unwrap();
    let error = failure(deploy::deploy(&flow, &moved, false));
    assert!(error.contains("cannot be deployed here"), "the re-pushed tag's digest carries no signature: {error}");

    assert_eq!(revisions(), before, "no Helm revision was made");
    assert_eq!(stable_image(&flow), image(&shared.v1), "stable untouched");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert!(runs.iter().filter(|r| r.flow == "deploy").skip(1).all(|r| r.result == "failed"), "{runs:#?}");

    // An explicit skip is allowed, loudly, and journaled with who asked.
    flow.signature = SignatureArgs { insecure_skip_signature: true, ..requiring_our_signature() };
    flow.signature.require_signature = false;
    deploy::deploy(&flow, &shared.v2, false).or_panic();
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let last = runs.last().unwrap();
    assert!(last.facts["signature"].contains("NOT checked") && last.facts["signature"].contains(&last.actor), "{:#?}", last.facts);
}
