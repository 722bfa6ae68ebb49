//! Supply chain: a signed release with its provenance runs; an image that cannot prove where it
//! came from is refused before anything changes, and stable keeps serving.
use std::path::PathBuf;
use std::sync::OnceLock;

use kube::Api;
use xtask::cluster::{app_images, docker::Docker, registry};
use xtask::flows::canary::{self, Approval, Phase};
use xtask::flows::{deploy, Flow};
use xtask::journal::RunResult;
use xtask::signing::Request;

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
            xtask::keys::init_keys(&sh, &private, &public).or_panic();
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
    let database = fixture::clean_vulnerability_database();
    let _heavy = fixture::cpu_heavy();
    let pinned = xtask::flows::release::release(&sh, tag, registry::HOST, key, database, true).or_panic();
    pinned.reference()
}

fn requiring_our_signature() -> Request {
    Request { public_keys: vec![keys().ours.1.clone()], require: true, ..Default::default() }
}

fn stable_image(flow: &Flow) -> String {
    let state = flow.record().or_panic();
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

    let mut flow = flow;
    flow.signature = requiring_our_signature();
    let args = fixture::canary_options(&tag, vec![50], Approval::Approved);
    let state = canary::start_canary(&flow, &args).or_panic();
    assert_eq!(state.phase, Phase::Promoted, "{state:#?}");
    let live = flow.record().or_panic().stable_image().unwrap();
    assert_eq!(live, released, "what runs is the digest that was verified");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(run.facts["signature"].contains("is signed with") && run.facts["signature"].contains("provenance"), "{:#?}", run.facts);
    load.stats().assert_none_failed();
}

#[test]
fn unsigned_other_keys_and_moved_tags_are_refused_before_any_change() {
    let shared = fixture::shared();
    // Every release this test needs, first: a CPU-heavy step started mid-test waits for every
    // traffic test under way to end (seen: 75 s for one).
    let theirs = format!("{}-theirs", shared.v1);
    release(&theirs, &keys().theirs.0);
    let moved = format!("{}-moved", shared.v1);
    release(&moved, &keys().ours.0);
    let old_key_release = format!("{}-old-key", shared.v1);
    release(&old_key_release, &keys().ours.0);
    let ns = TestNamespace::new("signed-refusals");
    let mut flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    flow.signature = requiring_our_signature();
    let revisions = || flow.record().or_panic().history.len();
    let before = revisions();

    // Unsigned.
    let error = failure(deploy::deploy(&flow, &shared.v2, false));
    assert!(error.contains("cannot be deployed here") && error.contains("signature"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");

    // Signed, but with another key.
    let error = failure(deploy::deploy(&flow, &theirs, false));
    assert!(error.contains("cannot be deployed here"), "{error}");

    // Signed with ours, then the tag moved to other content.
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
    assert!(runs.iter().filter(|r| r.flow == "deploy").skip(1).all(|r| r.result == RunResult::Failed), "{runs:#?}");

    // A key rotation: ours is the old key, theirs the new. A release signed with the old key
    // runs; with both keys trusted the new key's release deploys; once the old key is no longer
    // trusted, a rollback to the old key's release is checked again and refused; trusted again,
    // the rollback runs it.
    deploy::deploy(&flow, &old_key_release, false).or_panic();
    let both = Request { public_keys: vec![keys().theirs.1.clone(), keys().ours.1.clone()], require: true, ..Default::default() };
    flow.signature = both.clone();
    deploy::deploy(&flow, &theirs, false).or_panic();
    assert_eq!(stable_image(&flow), image(&theirs), "the new key's release runs beside the old key's trust");
    flow.signature = Request { public_keys: vec![keys().theirs.1.clone()], ..both.clone() };
    let at = flow.record().or_panic().history.len();
    let error =
        failure(xtask::flows::rollback::rollback(&flow, xtask::flows::rollback::To::Previous, &xtask::flows::rollback::Options::default()));
    assert!(error.contains("none made with a key this environment trusts") && error.contains("nothing was changed"), "{error}");
    assert_eq!((flow.record().or_panic().history.len(), stable_image(&flow)), (at, image(&theirs)), "the refused rollback changed nothing");
    flow.signature = both;
    xtask::flows::rollback::rollback(&flow, xtask::flows::rollback::To::Previous, &xtask::flows::rollback::Options::default()).or_panic();
    assert_eq!(stable_image(&flow), image(&old_key_release), "rolled back to the old key's release");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let rollback = runs.last().unwrap();
    assert!(rollback.flow == "rollback" && rollback.facts["signature"].contains(&keys().ours.1.display().to_string()), "{rollback:#?}");

    // An explicit skip is allowed, loudly, and journaled with who asked.
    flow.signature = Request { skip: true, reason: Some("e2e: the check itself is under test".into()), ..requiring_our_signature() };
    flow.signature.require = false;
    deploy::deploy(&flow, &shared.v2, false).or_panic();
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let last = runs.last().unwrap();
    assert!(last.facts["signature"].contains("NOT checked") && last.facts["signature"].contains(&last.actor), "{:#?}", last.facts);
}

#[test]
fn the_vulnerability_gate_refuses_an_affected_build_and_releases_a_clean_one() {
    let shared = fixture::shared();
    let sh = xtask::repo_shell().unwrap();
    let key = &keys().ours.0;

    let _heavy = fixture::cpu_heavy();
    let affected = fixture::vulnerability_database("99.0.0");
    let tag = format!("{}-vulnerable", shared.v1);
    let error = failure(xtask::flows::release::release(&sh, &tag, registry::HOST, key, &affected.database, true));
    assert!(error.contains("vulnerability gate") && error.contains("RUSTSEC-2099-0001") && error.contains("CRITICAL"), "{error}");
    assert!(error.contains("nothing was pushed or signed"), "{error}");
    let crane = xtask::crane::Crane::new(&sh).unwrap();
    let reference = app_images::in_registry(&format!("{}:{tag}", app_images::MODEL_SERVER_REPOSITORY), registry::HOST);
    assert!(crane.digest(&reference).is_err(), "the refused build was not pushed");

    let clean = fixture::vulnerability_database("0.1.0");
    let tag = format!("{}-clean", shared.v1);
    let released = xtask::flows::release::release(&sh, &tag, registry::HOST, key, &clean.database, true).or_panic();
    // The SBOM travels with the image, signed: the crates the scanner read from the binary.
    let cosign = xtask::cosign::Cosign::new(&sh).unwrap();
    let sboms = cosign
        .verified_attestations(&keys().ours.1, &format!("{}@{}", released.repository, released.digest), xtask::cosign::SBOM_TYPE)
        .or_panic();
    let sbom = &sboms.first().expect("an SBOM attestation")["predicate"];
    let components = sbom["components"].as_array().expect("CycloneDX components");
    assert!(components.iter().any(|c| c["name"] == "axum"), "the SBOM lists the crates model-server links: {sbom}");
    // ... and the system libraries beside the binary, by their Debian packages.
    for package in ["libc6", "libgcc"] {
        assert!(
            components.iter().any(|c| c["name"].as_str().is_some_and(|n| n.starts_with(package))
                && c["purl"].as_str().is_some_and(|p| p.starts_with("pkg:deb/debian/"))),
            "the SBOM lists the image's {package}: {sbom}"
        );
    }

    // The system libraries are scanned: an advisory against the image's glibc refuses it too.
    let glibc = fixture::system_library_advisory_database();
    let tag = format!("{}-old-glibc", shared.v1);
    let error = failure(xtask::flows::release::release(&sh, &tag, registry::HOST, key, &glibc.database, true));
    assert!(error.contains("DSA-9099-1") && error.contains("glibc") && error.contains("system library"), "{error}");
    // Allow-listed with a statement and an expiry in the future, it passes; expired, it blocks
    // again (Trivy's own handling of expired_at).
    let allow_list = xtask::repo_root().join(xtask::scan::ALLOW_LIST);
    let committed = std::fs::read_to_string(&allow_list).unwrap();
    struct Restore<'a>(&'a std::path::Path, &'a str);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            std::fs::write(self.0, self.1).unwrap();
        }
    }
    let _restore = Restore(&allow_list, &committed);
    let allow = |until: &str| {
        let entry = format!("vulnerabilities:\n  - id: DSA-9099-1\n    statement: \"a test exception\"\n    expired_at: {until}\n");
        std::fs::write(&allow_list, entry).unwrap();
    };
    allow("2099-01-01");
    let tag_allowed = format!("{}-glibc-allowed", shared.v1);
    let built = xtask::flows::release::build_to(&sh, &tag_allowed, &glibc.database, true, tempfile::tempdir().unwrap().path());
    let record = built.or_panic();
    assert_eq!(record.scan["scanner"]["result"]["allowListed"], 1, "{:#}", record.scan);
    allow("2020-01-01");
    let error = failure(xtask::flows::release::build_to(&sh, &tag_allowed, &glibc.database, true, tempfile::tempdir().unwrap().path()));
    assert!(error.contains("DSA-9099-1"), "an expired exception blocks again: {error}");
    drop(_restore);

    // Trivy failing is never a finding nor a pass: its fatal errors exit 1, which the gate
    // does not take for "found".
    let missing = std::path::Path::new("/nonexistent/image.tar");
    let error = format!("{:#}", xtask::scan::scan(&sh, missing, &clean.database).err().expect("no archive, no scan"));
    assert!(error.contains("Trivy could not scan") && error.contains("unable to open"), "{error}");

    // An advisory nobody scored blocks until someone judges it.
    let unscored = fixture::advisory_database("99.0.0", false, k8s_openapi::jiff::Timestamp::now());
    let tag = format!("{}-unscored", shared.v1);
    let error = failure(xtask::flows::release::release(&sh, &tag, registry::HOST, key, &unscored.database, true));
    assert!(error.contains("RUSTSEC-2099-0001") && error.contains("severity unknown"), "{error}");

    // A stale database is refused before any build, with the way to a fresh one.
    let months_ago = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(24 * 60);
    let stale = fixture::advisory_database("0.1.0", true, months_ago);
    let error = failure(xtask::flows::release::release(&sh, &tag, registry::HOST, key, &stale.database, true));
    assert!(error.contains("60 days old") && error.contains("Fetch a fresh one"), "{error}");

    // No database given, never a silent pass: Trivy fetches its own where its feed is
    // reachable; where it is not (every machine here), the error says what was tried and how
    // to give one.
    match xtask::scan::database(&sh, None, 7) {
        Ok(fetched) => assert!(xtask::scan::check_database(&fetched, k8s_openapi::jiff::Timestamp::now()).is_ok(), "{fetched:?}"),
        Err(err) => {
            let said = format!("{err:#}");
            assert!(
                said.contains("fetching Trivy's") && said.contains("Trivy did not fetch it") && said.contains("--vuln-db DIR"),
                "{said}"
            );
        }
    }
}

#[test]
fn provenance_that_names_another_commit_is_refused() {
    let shared = fixture::shared();
    let tag = format!("{}-forged", shared.v1);
    let released = release(&tag, &keys().ours.0);
    // A second provenance, signed with the right key, claiming another commit: what someone
    // attaching a build's provenance to a different image would produce.
    let sh = xtask::repo_shell().unwrap();
    let source = xtask::git::Source {
        commit: "0000000000000000000000000000000000000000".into(),
        dirty: false,
        repository: "elsewhere".into(),
        git_ref: String::new(),
    };
    let forged = xtask::signing::provenance(&source, &tag, "00", "2026-12-01T00:00:00Z", "2026-12-01T00:00:01Z");
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&forged).unwrap()).unwrap();
    let password = xtask::cosign::Password(std::env::var("COSIGN_PASSWORD").unwrap());
    let released = xtask::image::Reference::parse(&released).or_panic();
    let by_digest = format!("{}@{}", released.repository, released.digest.unwrap());
    let cosign = xtask::cosign::Cosign::new(&sh).unwrap();
    cosign.attest(&keys().ours.0, &password, &by_digest, file.path(), xtask::cosign::PROVENANCE_TYPE).or_panic();

    let ns = TestNamespace::new("signed-forged");
    let mut flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    flow.signature = requiring_our_signature();
    let error = failure(deploy::deploy(&flow, &tag, false));
    assert!(
        error.contains("cannot be deployed here") && error.contains("names commit 0000000000000000000000000000000000000000"),
        "{error}"
    );
    assert!(error.contains("nothing was changed"), "{error}");
}

/// Issue 24: the release workflow's two jobs, played in order. The build half holds no key and
/// pushes nothing; the publish half builds nothing, refuses an archive that is not the image its
/// record names, then pushes, signs and attests; what it published deploys where our signature
/// is required.
#[test]
fn a_release_built_without_the_key_then_published_deploys_verified() {
    let shared = fixture::shared();
    let sh = xtask::repo_shell().unwrap();
    // The run's own tag: the local registry keeps what earlier runs pushed.
    let tag = format!("{}-two-jobs-{}", shared.v1, std::process::id());
    let artifact = tempfile::tempdir().unwrap();
    let heavy = fixture::cpu_heavy();
    let record = xtask::flows::release::build_to(&sh, &tag, fixture::clean_vulnerability_database(), true, artifact.path()).or_panic();
    let crane = xtask::crane::Crane::new(&sh).unwrap();
    let reference = app_images::in_registry(&format!("{}:{tag}", app_images::MODEL_SERVER_REPOSITORY), registry::HOST);
    assert!(crane.digest(&reference).is_err(), "the build half pushed nothing");

    let ns = TestNamespace::new("signed-two-jobs");
    let publish = |from: &std::path::Path| {
        fixture::xtask_command(&ns)
            .args(["release", "publish", "--from", from.to_str().unwrap(), "-o", "json"])
            .env("SHIPSHAPE_COSIGN_KEY", &keys().ours.0)
            .output()
            .unwrap()
    };
    // An archive that is not the image its record names is refused before anything leaves.
    let forged = tempfile::tempdir().unwrap();
    for file in ["image.tar", "sbom.cdx.json"] {
        std::fs::hard_link(artifact.path().join(file), forged.path().join(file)).unwrap();
    }
    let other = xtask::flows::release::BuildRecord { image_id: "sha256:0000".into(), ..record.clone() };
    std::fs::write(forged.path().join("record.json"), serde_json::to_vec(&other).unwrap()).unwrap();
    let refused = publish(forged.path());
    let said = fixture::said(&refused);
    assert!(!refused.status.success() && said.contains("nothing was pushed or signed"), "{said}");
    assert!(crane.digest(&reference).is_err(), "the refused archive was not pushed");

    let published = publish(artifact.path());
    assert!(published.status.success(), "{}", fixture::said(&published));
    let document: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    let digest = document["digest"].as_str().unwrap().to_owned();
    drop(heavy);

    let mut flow = ns.flow();
    flow.signature = requiring_our_signature();
    deploy::deploy(&flow, &tag, false).or_panic();
    let live = flow.record().or_panic().stable_image().unwrap();
    assert!(live.ends_with(&digest), "what runs is the published digest: {live}");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let proven = &runs.last().unwrap().facts["signature"];
    assert!(proven.contains("is signed with") && proven.contains(&format!("names commit {}", record.source.commit)), "{proven}");
}

/// The cluster holds staging's supply-chain policy for everyone, not only for shipshape's
/// users: with sigstore policy-controller in the cluster and `admission apply` (as an operator
/// runs it), shipshape's deploy of a signed release passes, and by hand `kubectl set image` to
/// an unsigned image or to one signed by another key, and `helm upgrade` with the chart's own
/// check turned off, are refused by the API server; nothing changes. Then the cluster's policy
/// is changed by hand to trust another key: doctor's dry-run of the template's pod names the
/// refusal before any pod is replaced, the pod that replaces a deleted one is refused at
/// admission, and doctor names the image policy with its fix.
#[test]
fn the_cluster_itself_refuses_what_staging_s_policy_refuses_by_hand_too() {
    let shared = fixture::shared();
    let signed = fixture::signed_release(&shared.v1);
    let theirs = fixture::signed_release_with_another_key(&shared.v1);
    fixture::policy_controller();
    let kubeconfig = fixture::staging_kubeconfig();
    let context = xtask::chart::Env::Staging.cluster_context().or_panic().unwrap();
    let ns = TestNamespace::in_env(xtask::chart::Env::Staging, kubeconfig, "admission");
    // Whether a command succeeded, and all it printed (kubectl's and helm's words, unchecked).
    let ended = |out: std::process::Output| {
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let kubectl = |args: &[&str]| ended(fixture::kubectl(kubeconfig, &context, args));
    let repository = fixture::local_repository();
    let apply = ["admission", "apply", "--env", "staging", "-n", &ns.name, "--image-repository", &repository];
    let (applied, said) = ended(fixture::xtask_command(&ns).args(apply).output().unwrap());
    assert!(applied, "{said}");
    assert!(
        said.contains("ClusterImagePolicy shipshape-staging applied") && said.contains(&format!("namespace {} enforced", ns.name)),
        "{said}"
    );

    // shipshape's own flow: the signed release, by digest.
    deploy::deploy(&ns.deploy_flow(), &signed.tag, false).or_panic();
    let flow = ns.flow();
    assert_eq!(stable_image(&flow), image(&signed.tag));

    // By hand: kubectl set image, unsigned and signed by another key.
    for (what, reference) in [("unsigned", image(&shared.v2)), ("another key's", theirs.reference())] {
        let (changed, said) = kubectl(&["-n", &ns.name, "set", "image", "deployment/model-server", &format!("api={reference}")]);
        assert!(!changed && said.contains("denied the request") && said.contains("shipshape-staging"), "{what} image admitted: {said}");
    }
    // By hand: helm upgrade with the chart's own signature check turned off.
    let helm = xtask::tools::HELM.find(&ns.sh).or_panic();
    let chart = xtask::chart::chart_dir();
    let (upgraded, said) = ended(
        std::process::Command::new(helm)
            .env("KUBECONFIG", kubeconfig)
            .stdin(std::process::Stdio::null())
            .args([
                "upgrade",
                "model-server",
                chart.to_str().unwrap(),
                "--kube-context",
                &context,
                "-n",
                &ns.name,
                "--reuse-values",
                "--set",
                "supplyChain.requireSignature=false",
                "--set-string",
                &format!("image.tag={}", shared.v2),
                "--set",
                "imageDigests=null",
            ])
            .output()
            .unwrap(),
    );
    assert!(!upgraded && said.contains("denied the request"), "helm upgrade of an unsigned tag admitted: {said}");
    // Helm records the refused upgrade as a failed revision; what runs is unchanged.
    let deployment = flow
        .block_on(Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(flow.client().clone(), &ns.name).get("model-server"))
        .unwrap();
    let running = deployment.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap();
    assert!(running.ends_with(&signed.digest), "the Deployment still runs the signed digest: {running}");

    // The cluster's policy changed by hand to trust only another key: a replacement pod is
    // refused at admission, and doctor says so in the policy's words, with the fix.
    let pem = std::fs::read_to_string(fixture::another_public_key()).unwrap();
    let patch = serde_json::json!([{"op": "replace", "path": "/spec/authorities/0/key/data", "value": pem}]).to_string();
    let (patched, said) = kubectl(&["patch", "clusterimagepolicy", "shipshape-staging", "--type=json", "-p", &patch]);
    assert!(patched, "{said}");
    // The webhook reads policies from its informer: a moment after the patch. Before any pod
    // is replaced, doctor asks the cluster (a dry-run create of the template's pod) and names
    // the refusal: what a scale-up would meet, whose refused ReplicaSet update leaves no event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let would_refuse = loop {
        let checks = xtask::flows::doctor::doctor(&flow).or_panic();
        if let Some(check) = checks.iter().find(|c| c.name == "admission model-server" && c.outcome == xtask::report::Outcome::Fail) {
            break check.clone();
        }
        assert!(std::time::Instant::now() < deadline, "doctor never saw the policy refuse the template: {checks:#?}");
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    assert!(would_refuse.detail.contains("failed policy: shipshape-staging"), "{would_refuse:#?}");
    assert!(would_refuse.fix.as_deref().unwrap_or_default().contains("admission apply"), "{would_refuse:#?}");
    let (deleted, said) = kubectl(&["-n", &ns.name, "delete", "pods", "-l", &xtask::chart::pod_selector("model-server"), "--wait=false"]);
    assert!(deleted, "{said}");
    let started = std::time::Instant::now();
    let finding = loop {
        let checks = xtask::flows::doctor::doctor(&flow).or_panic();
        let refused = checks.iter().find(|c| c.name == "rollout model-server" && c.detail.contains("image policy"));
        if let Some(check) = refused {
            break check.clone();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "doctor never named the image policy: {checks:#?}");
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    assert_eq!(finding.outcome, xtask::report::Outcome::Fail, "{finding:#?}");
    assert!(
        finding.detail.contains("failed policy: shipshape-staging") && finding.detail.contains("admission apply --env"),
        "{finding:#?}"
    );
    // preflight sees the cluster's policy is not the environment's, and says how to fix it.
    let admission_check = || {
        let checks = xtask::flows::preflight::preflight(&flow).or_panic();
        checks
            .into_iter()
            .find(|c| c.name == "admission policy")
            .expect("preflight checks the admission policy of an enforcing environment")
    };
    let stale = admission_check();
    assert_eq!(stale.outcome, xtask::report::Outcome::Warn, "{stale:#?}");
    assert!(
        stale.detail.contains("trusts other keys or builders") && stale.fix.as_deref().unwrap_or_default().contains("admission apply"),
        "{stale:#?}"
    );
    // Written again from the environment's values, the policy trusts the environment's key; as
    // JSON, what was written.
    let out = fixture::xtask_command(&ns).args(apply).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&document["command"], &document["exit_code"]),
        (&serde_json::json!("admission apply"), &serde_json::json!(0)),
        "{document}"
    );
    assert_eq!(document["applied"]["policies"], serde_json::json!(["shipshape-staging", "shipshape-staging-unsigned"]), "{document}");
    assert_eq!(document["applied"]["namespace"], serde_json::json!(ns.name), "{document}");
    let held = admission_check();
    assert_eq!(held.outcome, xtask::report::Outcome::Pass, "{held:#?}");
}
