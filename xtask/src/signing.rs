//! Signatures: the SLSA provenance a release attests, the environment's policy, and the check
//! every command that changes what runs makes before any change: the digest it resolved carries
//! a signature and a provenance attestation made with one key the environment trusts now, and
//! the provenance is about that digest, names the commit the image says it was built from and
//! says what the environment's provenance policy asks. (The key pairs: keys.rs; `release`
//! itself, which builds and signs, is a flow: flows/release.rs.)
//!
//! Keys only, offline: no transparency log (Rekor) and no certificate authority (Fulcio).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;
use xshell::Shell;

use k8s_openapi::jiff::Timestamp;

use crate::chart::{ProvenancePolicy, SupplyChain, TrustedKey};
use crate::cosign::Cosign;
use crate::image::Pinned;
use crate::keys::PUBLIC_KEY;

/// The image label naming the commit an image was built from (OCI annotation key).
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// `builder.id` in the provenance: who built it. `release` from committed sources only...
pub const BUILDER_ID: &str = "https://github.com/shipshape/shipshape/xtask-release@v1";
/// ...and with `--allow-dirty`, from uncommitted changes: another builder, one an environment
/// that lists trusted builders does not take unless it names this one too.
pub const UNCOMMITTED_BUILDER_ID: &str = "https://github.com/shipshape/shipshape/xtask-release-uncommitted@v1";
const BUILD_TYPE: &str = "https://github.com/shipshape/shipshape/model-server-image@v1";

pub fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The SLSA v1 provenance predicate (buildDefinition and runDetails) of a release build.
pub fn provenance(source: &crate::git::Source, tag: &str, cargo_lock_sha256: &str, started: &str, finished: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "command": format!("cargo xtask release --tag {tag}{}", if source.dirty { " --allow-dirty" } else { "" }),
                "source": {"repository": source.repository, "commit": source.commit, "dirty": source.dirty, "ref": source.git_ref}
            },
            "internalParameters": {"actor": crate::journal::actor()},
            "resolvedDependencies": [
                {"uri": format!("git+{}", source.repository), "digest": {"gitCommit": source.commit}},
                {"uri": "Cargo.lock", "digest": {"sha256": cargo_lock_sha256}}
            ]
        },
        "runDetails": {
            "builder": {"id": if source.dirty { UNCOMMITTED_BUILDER_ID } else { BUILDER_ID }},
            "metadata": {"invocationId": format!("{}-{}", tag, std::process::id()), "startedOn": started, "finishedOn": finished}
        }
    })
}

/// The commit a provenance predicate says the image was built from.
pub fn provenance_commit(predicate: &Value) -> Option<&str> {
    predicate["buildDefinition"]["resolvedDependencies"].as_array()?.iter().find_map(|d| d["digest"]["gitCommit"].as_str())
}

/// What the person running a command asks of the signature check (`--public-key`,
/// `--require-signature`, `--insecure-skip-signature` with `--reason`).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Keys to verify with instead of the environment's (where it requires signatures: a choice
    /// among its own keys only).
    pub public_keys: Vec<PathBuf>,
    pub require: bool,
    pub skip: bool,
    /// Why the check is skipped: journaled with who asked.
    pub reason: Option<String>,
}

/// What an image must prove before it runs here: the environment's `supplyChain` values, which
/// the command line may make stricter but never weaker where the environment requires
/// signatures. The one way past a requiring environment is break-glass, and only where the
/// environment's own values allow it (`supplyChain.allowBreakGlass`), with a reason.
#[derive(Debug, PartialEq)]
pub struct Policy {
    pub require: bool,
    /// The keys trusted now, in the order they are tried: one of them must have made both the
    /// signature and the provenance.
    pub public_keys: Vec<PathBuf>,
    /// Keys the environment lists but does not trust now (outside their window), in words: said
    /// when nothing verifies, so a refusal after a key's retirement explains itself.
    pub untrusted_now: Vec<String>,
    pub provenance: ProvenancePolicy,
    /// A signed vulnerability scan at most this many days old (0: none asked).
    pub scan_max_age_days: u32,
    /// Skip the check: break-glass (or a dev environment that allows unsigned images), with why.
    pub skip: Option<String>,
}

impl Policy {
    /// Decides the policy for `env` (its name, for messages) from its values and the request, at
    /// time `now`; refuses a request that would weaken a requiring environment.
    pub fn decide(env: &str, supply_chain: &SupplyChain, request: &Request, now: Timestamp) -> Result<Policy> {
        let file = format!("deploy/envs/{env}.yaml");
        let root = crate::repo_root();
        let mut trusted = Vec::new();
        let mut untrusted_now = Vec::new();
        let listed = if supply_chain.public_keys.is_empty() {
            vec![TrustedKey { path: PUBLIC_KEY.to_owned(), ..Default::default() }]
        } else {
            supply_chain.public_keys.clone()
        };
        for key in &listed {
            match trust_window(key, now).with_context(|| format!("supplyChain.publicKeys in {file}"))? {
                None => trusted.push(root.join(&key.path)),
                Some(why) => untrusted_now.push(format!("{} ({why})", key.path)),
            }
        }
        let foreign = request.public_keys.iter().find(|given| !trusted.iter().any(|key| same_file(given, key)));
        if let (true, Some(given)) = (supply_chain.require_signature, foreign) {
            bail!(
                "{env} trusts only its own keys (supplyChain.publicKeys in {file}): --public-key {} cannot replace them \
                 here (nothing was changed). Sign the release with one of the environment's keys, or add the key to \
                 supplyChain.publicKeys in {file} through review",
                given.display()
            );
        }
        let public_keys = if request.public_keys.is_empty() { trusted } else { request.public_keys.clone() };
        let require = request.require || supply_chain.require_signature;
        let skip = match (request.skip, supply_chain.require_signature, supply_chain.allow_break_glass) {
            (false, _, _) => None,
            (true, true, false) => bail!(
                "{env} requires signed releases (supplyChain.requireSignature in {file}), and its values do not allow \
                 break-glass: --insecure-skip-signature is refused here (nothing was changed). Release the image signed \
                 (`cargo xtask release`), or allow break-glass with supplyChain.allowBreakGlass in {file} through review"
            ),
            (true, true, true) => match request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                Some(reason) => Some(format!("break-glass in {env}: {reason}")),
                None => bail!(
                    "{env} allows break-glass only with a reason: add --reason \"...\" (it is journaled with who asked; \
                     nothing was changed)"
                ),
            },
            (true, false, _) => Some(request.reason.clone().unwrap_or_else(|| "--insecure-skip-signature".to_owned())),
        };
        Ok(Policy {
            require,
            public_keys,
            untrusted_now,
            provenance: supply_chain.provenance.clone(),
            scan_max_age_days: supply_chain.scan.max_age_days,
            skip,
        })
    }

    /// The policy a rollback is held to: all of it but the scan's age. A rollback returns to
    /// what ran before; refusing it because that release's scan grew old would keep a broken
    /// release serving (its keys, signature and provenance are checked as for any change).
    pub fn for_rollback(self) -> Policy {
        Policy { scan_max_age_days: 0, ..self }
    }
}

/// `key`'s window: its `notBefore` and `notAfter`, each when given.
pub fn window_of(key: &TrustedKey) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
    let parse = |field: &str, text: &Option<String>| -> Result<Option<Timestamp>> {
        text.as_deref()
            .map(|t| {
                t.parse::<Timestamp>()
                    .with_context(|| format!("{} {field}: {t:?} is not an RFC 3339 time such as 2027-06-30T00:00:00Z", key.path))
            })
            .transpose()
    };
    Ok((parse("notBefore", &key.not_before)?, parse("notAfter", &key.not_after)?))
}

/// Whether `key` is trusted at `now`: None when it is, else why not in words.
pub fn trust_window(key: &TrustedKey, now: Timestamp) -> Result<Option<String>> {
    Ok(match window_of(key)? {
        (Some(from), _) if now < from => Some(format!("trusted from {from} on")),
        (_, Some(until)) if now > until => Some(format!("trusted until {until}: retired")),
        _ => None,
    })
}

/// Two paths naming one file (a relative and an absolute path to the same key are the same key).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The check before any change: `pinned` is signed with one of the policy's keys, and its
/// provenance, signed with that same key, is about this digest, names the commit the image is
/// labelled with and says what the environment's provenance policy asks. Returns what was
/// proven, in words; an environment that requires signatures refuses anything less.
pub fn check(sh: &Shell, policy: &Policy, pinned: &Pinned) -> Result<String> {
    let reference = pinned.by_digest();
    if let Some(why) = &policy.skip {
        let said =
            format!("WARNING: the signature and provenance of {reference} were NOT checked ({why}; asked by {})", crate::journal::actor());
        println!("  {said}");
        return Ok(said);
    }
    let proven = (|| -> Result<String> {
        let cosign = Cosign::new(sh)?;
        let key = signing_key(&cosign, policy, &reference)?;
        let statements = cosign.verified_attestations(&key, &reference, crate::cosign::PROVENANCE_TYPE).context("provenance")?;
        let labelled = crate::crane::Crane::new(sh)?.label(&reference, REVISION_LABEL)?;
        let commit = hold_provenance(&statements, &pinned.digest, labelled.as_deref(), &policy.provenance)?;
        let scan = if policy.scan_max_age_days > 0 {
            let scans = cosign.verified_attestations(&key, &reference, crate::cosign::VULN_TYPE).context("scan")?;
            let predicates: Vec<Value> = scans.iter().map(|s| s["predicate"].clone()).collect();
            format!("; {}", hold_scan_age(&predicates, policy.scan_max_age_days, Timestamp::now())?)
        } else {
            String::new()
        };
        Ok(format!(
            "{reference} is signed with {} and its SLSA provenance (signed too) names commit {commit}, built by a trusted \
             builder as this environment asks{scan} (no transparency log: offline)",
            key.display()
        ))
    })();
    match proven {
        Ok(said) => {
            println!("  {said}");
            Ok(said)
        }
        Err(err) if policy.require => {
            bail!("{reference} cannot be deployed here: {err:#}. This environment requires releases signed with {}", keys_in_words(policy))
        }
        Err(err) => {
            let said = format!("this environment allows unsigned images; {reference}: {err:#}");
            println!("  {said}");
            Ok(said)
        }
    }
}

/// The first of the policy's keys that made `reference`'s signature; the error says, for every
/// key, why not (no signature, another key, no such file), and which keys are not trusted now.
fn signing_key(cosign: &Cosign, policy: &Policy, reference: &str) -> Result<PathBuf> {
    if policy.public_keys.is_empty() {
        bail!(
            "signature: this environment trusts no key now (supplyChain.publicKeys: {}): list a key whose window is open",
            policy.untrusted_now.join(", ")
        );
    }
    let mut tried = Vec::new();
    for key in &policy.public_keys {
        if !key.is_file() {
            tried.push(format!("{}: no such file (`cargo xtask keys init` creates the pair)", key.display()));
            continue;
        }
        match cosign.verify(key, reference) {
            Ok(()) => return Ok(key.clone()),
            Err(why) => tried.push(format!("{}: {why:#}", key.display())),
        }
    }
    let mut said = format!("signature: none made with a key this environment trusts now ({})", tried.join("; "));
    if !policy.untrusted_now.is_empty() {
        said.push_str(&format!("; not trusted now: {}", policy.untrusted_now.join(", ")));
    }
    bail!(said)
}

fn keys_in_words(policy: &Policy) -> String {
    let keys: Vec<String> = policy.public_keys.iter().map(|k| k.display().to_string()).collect();
    match keys.as_slice() {
        [] => "a key it trusts now (none: see supplyChain.publicKeys)".to_owned(),
        [one] => one.clone(),
        _ => format!("one of {}", keys.join(", ")),
    }
}

/// The parameters shipshape's provenance carries; SLSA's verification guidance: a parameter
/// the verifier does not know fails, it is not ignored.
const KNOWN_EXTERNAL_PARAMETERS: &[&str] = &["command", "source"];
const KNOWN_SOURCE_PARAMETERS: &[&str] = &["repository", "commit", "dirty", "ref"];

/// Holds every provenance statement (each verified with the signing key) against the digest,
/// the commit the image is labelled with and the environment's provenance policy. Every
/// statement must pass: one that contradicts is evidence, not noise beside a good one. Returns
/// the commit they name; the error says which rule failed.
pub fn hold_provenance(statements: &[Value], digest: &str, labelled: Option<&str>, policy: &ProvenancePolicy) -> Result<String> {
    if statements.is_empty() {
        bail!("provenance: no SLSA provenance attestation signed with that key");
    }
    let Some(label) = labelled else {
        bail!("provenance: the image carries no {REVISION_LABEL} label to hold it against");
    };
    let bare_digest = digest.trim_start_matches("sha256:");
    for statement in statements {
        let about_this_digest = statement["subject"]
            .as_array()
            .is_some_and(|subjects| subjects.iter().any(|s| s["digest"]["sha256"].as_str() == Some(bare_digest)));
        if !about_this_digest {
            bail!("provenance: an attestation's subject is not {digest}");
        }
        let predicate = &statement["predicate"];
        let definition = &predicate["buildDefinition"];
        if definition["buildType"] != BUILD_TYPE {
            bail!("provenance: buildType {} is not {BUILD_TYPE}, the one shipshape knows how to verify", definition["buildType"]);
        }
        let external = &definition["externalParameters"];
        unknown_keys(external, KNOWN_EXTERNAL_PARAMETERS, "externalParameters")?;
        let source = &external["source"];
        unknown_keys(source, KNOWN_SOURCE_PARAMETERS, "externalParameters.source")?;
        let builder = predicate["runDetails"]["builder"]["id"].as_str().unwrap_or_default();
        if !policy.trusted_builders.is_empty() && !policy.trusted_builders.iter().any(|b| b == builder) {
            let why = if builder == UNCOMMITTED_BUILDER_ID { " (built with uncommitted changes: --allow-dirty)" } else { "" };
            bail!(
                "provenance: builder {builder:?}{why} is not one this environment trusts (supplyChain.provenance.trustedBuilders: {})",
                policy.trusted_builders.join(", ")
            );
        }
        let repository = source["repository"].as_str().unwrap_or_default();
        if !policy.source_repositories.is_empty() && !policy.source_repositories.iter().any(|r| r == repository) {
            bail!(
                "provenance: built from repository {repository:?}, not one this environment takes releases from \
                 (supplyChain.provenance.sourceRepositories: {})",
                policy.source_repositories.join(", ")
            );
        }
        if policy.require_clean_tree && source["dirty"] != Value::Bool(false) {
            bail!(
                "provenance: built from a tree with uncommitted changes to the image's inputs (or one that does not say): \
                 this environment takes releases of committed sources only (supplyChain.provenance.requireCleanTree). \
                 Commit, then release again"
            );
        }
        let git_ref = source["ref"].as_str().unwrap_or_default();
        if !policy.refs.is_empty() && !policy.refs.iter().any(|r| r == git_ref) {
            let built_from = if git_ref.is_empty() { "no ref (a detached checkout)".to_owned() } else { format!("ref {git_ref}") };
            bail!(
                "provenance: built from {built_from}, not one this environment takes releases from \
                 (supplyChain.provenance.refs: {})",
                policy.refs.join(", ")
            );
        }
        match provenance_commit(predicate) {
            None => bail!("provenance: an attestation names no source commit"),
            Some(commit) if commit != label => {
                bail!("provenance: an attestation names commit {commit} but the image was built from {label}")
            }
            Some(_) => {}
        }
    }
    Ok(label.to_owned())
}

/// The newest signed scan is at most `max_age_days` old at `now`; in words.
pub fn hold_scan_age(predicates: &[Value], max_age_days: u32, now: Timestamp) -> Result<String> {
    // When the newest of the scans finished: how recent the release's scan is.
    let newest = predicates.iter().filter_map(|p| p["metadata"]["scanFinishedOn"].as_str()?.parse::<Timestamp>().ok()).max();
    let Some(newest) = newest else {
        bail!("scan: no vulnerability scan attestation signed with that key (this environment asks for one at most {max_age_days} days old: release the image again)");
    };
    let days = now.duration_since(newest).as_secs() / 86_400;
    if days > i64::from(max_age_days) {
        bail!(
            "scan: its newest vulnerability scan finished {newest}, {days} days ago; this environment takes releases scanned \
             within {max_age_days} days (supplyChain.scan.maxAgeDays): release it again, which scans it against today's database"
        );
    }
    Ok(format!("scanned {days} day(s) ago ({newest})"))
}

fn unknown_keys(object: &Value, known: &[&str], at: &str) -> Result<()> {
    let unknown: Vec<&String> = object.as_object().into_iter().flat_map(|o| o.keys()).filter(|k| !known.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        bail!(
            "provenance: {at} has parameters shipshape does not know ({}): an unknown parameter fails verification (SLSA)",
            unknown.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_names_the_commit_and_the_lock_file() {
        let source = crate::git::Source {
            commit: "abc123".into(),
            dirty: true,
            repository: "https://example.org/r.git".into(),
            git_ref: String::new(),
        };
        let p = provenance(&source, "v2", "ff", "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z");
        assert_eq!(provenance_commit(&p), Some("abc123"));
        assert_eq!(p["buildDefinition"]["externalParameters"]["source"]["dirty"], true);
        assert_eq!(p["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"], "ff");
        assert_eq!(p["runDetails"]["metadata"]["finishedOn"], "2026-12-01T00:01:00Z");
    }

    fn requiring(allow_break_glass: bool) -> SupplyChain {
        SupplyChain { require_signature: true, allow_break_glass, ..Default::default() }
    }

    fn at(time: &str) -> Timestamp {
        time.parse().unwrap()
    }

    fn decide(env: &str, supply_chain: &SupplyChain, request: &Request) -> Result<Policy> {
        Policy::decide(env, supply_chain, request, at("2026-12-05T00:00:00Z"))
    }

    #[test]
    fn the_environment_decides_unless_the_command_line_is_stricter() {
        let ask = Request::default();
        let dev = SupplyChain::default();
        assert!(!decide("dev", &dev, &ask).unwrap().require);
        assert!(decide("prod", &requiring(false), &ask).unwrap().require);
        let strict = Request { require: true, ..Default::default() };
        assert!(decide("dev", &dev, &strict).unwrap().require);
        assert_eq!(decide("dev", &dev, &ask).unwrap().public_keys, [crate::repo_root().join(PUBLIC_KEY)]);
    }

    /// Issue 19: with `requireSignature: true` from the values file, no flag weakens the check.
    #[test]
    fn a_requiring_environment_refuses_another_key_and_a_skip() {
        let other_key = Request { public_keys: vec!["/tmp/someone-elses.pub".into()], ..Default::default() };
        let refused = decide("prod", &requiring(false), &other_key).unwrap_err().to_string();
        assert!(refused.contains("cannot replace them") && refused.contains("nothing was changed"), "{refused}");
        let same_key = Request { public_keys: vec![crate::repo_root().join(PUBLIC_KEY)], ..Default::default() };
        assert!(decide("prod", &requiring(false), &same_key).is_ok(), "naming the environment's own key is no change");

        let skip = Request { skip: true, reason: Some("registry down".into()), ..Default::default() };
        let refused = decide("prod", &requiring(false), &skip).unwrap_err().to_string();
        assert!(refused.contains("do not allow break-glass") && refused.contains("allowBreakGlass"), "{refused}");
    }

    #[test]
    fn break_glass_needs_the_environment_s_consent_and_a_reason() {
        let no_reason = Request { skip: true, ..Default::default() };
        let refused = decide("prod", &requiring(true), &no_reason).unwrap_err().to_string();
        assert!(refused.contains("--reason"), "{refused}");
        let blank = Request { skip: true, reason: Some("  ".into()), ..Default::default() };
        assert!(decide("prod", &requiring(true), &blank).is_err(), "a blank reason is no reason");
        let why = Request { skip: true, reason: Some("INC-42: registry signing service down".into()), ..Default::default() };
        let policy = decide("prod", &requiring(true), &why).unwrap();
        assert_eq!(policy.skip.as_deref(), Some("break-glass in prod: INC-42: registry signing service down"));
    }

    #[test]
    fn an_environment_that_does_not_require_signatures_takes_the_flags() {
        let dev = SupplyChain::default();
        let skip = Request { skip: true, ..Default::default() };
        assert_eq!(decide("dev", &dev, &skip).unwrap().skip.as_deref(), Some("--insecure-skip-signature"));
        let keys = Request { public_keys: vec!["/tmp/new.pub".into(), "/tmp/old.pub".into()], ..Default::default() };
        assert_eq!(decide("dev", &dev, &keys).unwrap().public_keys, [PathBuf::from("/tmp/new.pub"), PathBuf::from("/tmp/old.pub")]);
    }

    /// Issue 21: a rotation lists the new key beside the old; each is trusted within its window.
    #[test]
    fn every_listed_key_is_trusted_within_its_window() {
        let key = |path: &str, not_before: Option<&str>, not_after: Option<&str>| TrustedKey {
            path: path.to_owned(),
            not_before: not_before.map(str::to_owned),
            not_after: not_after.map(str::to_owned),
        };
        let rotated = SupplyChain {
            require_signature: true,
            public_keys: vec![
                key("deploy/keys/cosign-2027.pub", Some("2027-01-01T00:00:00Z"), None),
                key("deploy/keys/cosign-2026.pub", None, Some("2027-03-31T00:00:00Z")),
                key("deploy/keys/cosign-2025.pub", None, Some("2026-06-30T00:00:00Z")),
            ],
            ..Default::default()
        };
        let trusted = |time: &str| -> Vec<String> {
            let policy = Policy::decide("prod", &rotated, &Request::default(), at(time)).unwrap();
            policy.public_keys.iter().map(|k| k.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(trusted("2026-12-05T00:00:00Z"), ["cosign-2026.pub"]);
        assert_eq!(trusted("2027-02-01T00:00:00Z"), ["cosign-2027.pub", "cosign-2026.pub"], "both during the overlap");
        assert_eq!(trusted("2027-04-01T00:00:00Z"), ["cosign-2027.pub"]);
        let later = Policy::decide("prod", &rotated, &Request::default(), at("2027-04-01T00:00:00Z")).unwrap();
        assert!(later.untrusted_now.iter().any(|k| k.contains("cosign-2026.pub") && k.contains("retired")), "{later:?}");

        // Choosing among the environment's own keys is allowed; a retired one is not its key now.
        let retired = Request { public_keys: vec![crate::repo_root().join("deploy/keys/cosign-2025.pub")], ..Default::default() };
        assert!(decide("prod", &rotated, &retired).unwrap_err().to_string().contains("cannot replace them"));

        let typo = SupplyChain { public_keys: vec![key("k.pub", None, Some("next tuesday"))], ..Default::default() };
        let refused = decide("dev", &typo, &Request::default()).unwrap_err();
        assert!(format!("{refused:#}").contains("not an RFC 3339 time"), "{refused:#}");
    }

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    /// A provenance statement as `release` makes it, about [`DIGEST`].
    fn statement(dirty: bool) -> Value {
        let source = crate::git::Source {
            commit: "abc123".into(),
            dirty,
            repository: "https://example.org/shipshape.git".into(),
            git_ref: "refs/heads/main".into(),
        };
        json!({
            "subject": [{"name": "localhost:5001/shipshape/model-server", "digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}],
            "predicate": provenance(&source, "v2", "ff", "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z"),
        })
    }

    fn prod_provenance() -> ProvenancePolicy {
        ProvenancePolicy {
            trusted_builders: vec![BUILDER_ID.to_owned()],
            source_repositories: vec!["https://example.org/shipshape.git".to_owned()],
            require_clean_tree: true,
            refs: vec!["refs/heads/main".to_owned()],
        }
    }

    /// Issue 21: provenance is held against what the environment accepts, and says which rule
    /// failed.
    #[test]
    fn provenance_is_held_against_the_environment_s_policy_rule_by_rule() {
        let hold =
            |statement: &Value, policy: &ProvenancePolicy| hold_provenance(std::slice::from_ref(statement), DIGEST, Some("abc123"), policy);
        assert_eq!(hold(&statement(false), &prod_provenance()).unwrap(), "abc123");
        assert!(hold(&statement(true), &ProvenancePolicy::default()).is_ok(), "dev takes a dirty build");

        let dirty = hold(&statement(true), &prod_provenance()).unwrap_err().to_string();
        assert!(dirty.contains("xtask-release-uncommitted") && dirty.contains("not one this environment trusts"), "{dirty}");
        let clean_only = ProvenancePolicy { require_clean_tree: true, ..Default::default() };
        assert!(hold(&statement(true), &clean_only).unwrap_err().to_string().contains("uncommitted changes"));

        let mut elsewhere = statement(false);
        elsewhere["predicate"]["buildDefinition"]["externalParameters"]["source"]["repository"] = json!("https://example.org/fork.git");
        assert!(hold(&elsewhere, &prod_provenance())
            .unwrap_err()
            .to_string()
            .contains("built from repository \"https://example.org/fork.git\""));

        let mut branch = statement(false);
        branch["predicate"]["buildDefinition"]["externalParameters"]["source"]["ref"] = json!("refs/heads/experiment");
        assert!(hold(&branch, &prod_provenance()).unwrap_err().to_string().contains("ref refs/heads/experiment"));

        let mut unknown = statement(false);
        unknown["predicate"]["buildDefinition"]["externalParameters"]["features"] = json!("debug");
        let said = hold(&unknown, &ProvenancePolicy::default()).unwrap_err().to_string();
        assert!(said.contains("does not know (features)"), "an unknown parameter fails even where nothing else is asked: {said}");

        let mut build_type = statement(false);
        build_type["predicate"]["buildDefinition"]["buildType"] = json!("https://example.org/other@v1");
        assert!(hold(&build_type, &ProvenancePolicy::default()).unwrap_err().to_string().contains("buildType"));

        let other_digest = hold_provenance(&[statement(false)], "sha256:22", Some("abc123"), &ProvenancePolicy::default());
        assert!(other_digest.unwrap_err().to_string().contains("subject is not sha256:22"));
        let other_commit = hold_provenance(&[statement(false)], DIGEST, Some("def456"), &ProvenancePolicy::default());
        assert!(other_commit.unwrap_err().to_string().contains("names commit abc123 but the image was built from def456"));
        // One good statement does not outweigh a contradicting one signed with the same key.
        let mixed = hold_provenance(&[statement(false), statement(true)], DIGEST, Some("abc123"), &prod_provenance());
        assert!(mixed.is_err());
        assert!(hold_provenance(&[], DIGEST, Some("abc123"), &ProvenancePolicy::default()).is_err(), "no provenance is no pass");
    }

    /// Issue 21: an environment may ask for a recent signed scan; rollbacks are not held to it.
    #[test]
    fn a_scan_older_than_the_environment_takes_is_refused_and_rollbacks_are_not_held_to_it() {
        let now = at("2026-12-05T00:00:00Z");
        let scanned = |t: &str| json!({"metadata": {"scanFinishedOn": t}});
        assert!(hold_scan_age(&[scanned("2026-11-20T00:00:00Z")], 30, now).unwrap().contains("15 day(s) ago"));
        let stale = hold_scan_age(&[scanned("2026-10-01T00:00:00Z")], 30, now).unwrap_err().to_string();
        assert!(stale.contains("65 days ago") && stale.contains("maxAgeDays") && stale.contains("release it again"), "{stale}");
        assert!(hold_scan_age(&[scanned("2026-10-01T00:00:00Z"), scanned("2026-12-01T00:00:00Z")], 30, now).is_ok(), "the newest counts");
        assert!(hold_scan_age(&[], 30, now).unwrap_err().to_string().contains("no vulnerability scan attestation"));

        let prod = SupplyChain { require_signature: true, scan: crate::chart::ScanPolicy { max_age_days: 30 }, ..Default::default() };
        let policy = decide("prod", &prod, &Request::default()).unwrap();
        assert_eq!(policy.scan_max_age_days, 30);
        assert_eq!(policy.for_rollback().scan_max_age_days, 0);
    }
}
