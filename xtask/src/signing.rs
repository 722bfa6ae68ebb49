//! Signatures: the key pair (`keys init`), the SLSA provenance a release attests, and the check
//! every command that changes what runs makes before any change: the digest it resolved carries
//! a signature and a provenance attestation made with the environment's key, and the provenance
//! names the commit the image says it was built from. (`release` itself, which builds and signs,
//! is a flow: flows/release.rs.)
//!
//! Keys only, offline: no transparency log (Rekor) and no certificate authority (Fulcio).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;
use xshell::Shell;

use crate::cosign::{Cosign, Password};
use crate::image::Pinned;

/// The public key environments verify against, committed with the repository.
pub const PUBLIC_KEY: &str = "deploy/keys/cosign.pub";
/// The image label naming the commit an image was built from (OCI annotation key).
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// `builder.id` in the provenance: who built it.
const BUILDER_ID: &str = "https://github.com/shipshape/shipshape/xtask-release@v1";
const BUILD_TYPE: &str = "https://github.com/shipshape/shipshape/model-server-image@v1";

/// `$SHIPSHAPE_COSIGN_KEY`, else `$XDG_CONFIG_HOME/shipshape/cosign.key`, else
/// `~/.config/shipshape/cosign.key`: never inside the repository.
pub fn private_key_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SHIPSHAPE_COSIGN_KEY").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("set SHIPSHAPE_COSIGN_KEY or HOME")?).join(".config"),
    };
    Ok(config.join("shipshape/cosign.key"))
}

/// The key's password, from $COSIGN_PASSWORD (never an argument, never printed).
pub fn password() -> Result<Password> {
    match std::env::var("COSIGN_PASSWORD") {
        Ok(password) => Ok(Password(password)),
        Err(_) => bail!(
            "COSIGN_PASSWORD is not set: the signing key's password comes from the environment, never the command line. \
             In a shell: `read -rs COSIGN_PASSWORD && export COSIGN_PASSWORD`; in CI: a secret mapped to that variable"
        ),
    }
}

/// Creates the key pair: the private key at `private` (mode 600), the public key at `public`.
pub fn init_keys(sh: &Shell, private: &Path, public: &Path) -> Result<()> {
    let password = password()?;
    may_make_key_pair(private, public, &password)?;
    let scratch = tempfile::tempdir()?;
    Cosign::new(sh)?.generate_key_pair(scratch.path(), &password)?;
    for path in [private, public] {
        std::fs::create_dir_all(path.parent().context("a key path needs a directory")?)?;
    }
    std::fs::copy(scratch.path().join("cosign.key"), private)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o600))?;
    std::fs::copy(scratch.path().join("cosign.pub"), public)?;
    println!("private key: {} (encrypted with $COSIGN_PASSWORD; keep it out of the repository)", private.display());
    println!("public key:  {} (commit it: environments verify releases against it)", public.display());
    Ok(())
}

/// What `keys init` refuses before making anything: replacing either half of a key pair (the
/// public key is what environments verify against: a new one makes every release signed with
/// the old key undeployable, rollbacks included), and a private key without a password (anyone
/// who can read the file could sign).
fn may_make_key_pair(private: &Path, public: &Path, password: &Password) -> Result<()> {
    if private.exists() {
        bail!("{} exists: shipshape never replaces a signing key. Delete it yourself to make a new one", private.display());
    }
    if public.exists() {
        bail!(
            "{} exists: environments verify releases against it, and a new key would make every release signed with the \
             old one undeployable (rollbacks included). Delete it yourself if that is what you want, after re-signing what \
             must stay deployable",
            public.display()
        );
    }
    if password.0.is_empty() {
        bail!("COSIGN_PASSWORD is empty: a private key without a password signs for anyone who can read the file");
    }
    Ok(())
}

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
                "command": format!("cargo xtask release --tag {tag}"),
                "source": {"repository": source.repository, "commit": source.commit, "dirty": source.dirty}
            },
            "internalParameters": {"actor": crate::journal::actor()},
            "resolvedDependencies": [
                {"uri": format!("git+{}", source.repository), "digest": {"gitCommit": source.commit}},
                {"uri": "Cargo.lock", "digest": {"sha256": cargo_lock_sha256}}
            ]
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID},
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
    pub public_key: Option<PathBuf>,
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
    pub public_key: PathBuf,
    /// Skip the check: break-glass (or a dev environment that allows unsigned images), with why.
    pub skip: Option<String>,
}

impl Policy {
    /// Decides the policy for `env` (its name, for messages) from its values and the request;
    /// refuses a request that would weaken a requiring environment.
    pub fn decide(env: &str, supply_chain: &crate::chart::SupplyChain, request: &Request) -> Result<Policy> {
        let configured = if supply_chain.public_key.is_empty() { PUBLIC_KEY } else { supply_chain.public_key.as_str() };
        let environment_key = crate::repo_root().join(configured);
        let file = format!("deploy/envs/{env}.yaml");
        let public_key = match &request.public_key {
            Some(given) if supply_chain.require_signature && !same_file(given, &environment_key) => bail!(
                "{env} requires releases signed with its own key ({configured}, supplyChain in {file}): --public-key {} \
                 cannot replace it here (nothing was changed). Sign the release with the environment's key, or change \
                 supplyChain.publicKey in {file} through review",
                given.display()
            ),
            Some(given) => given.clone(),
            None => environment_key,
        };
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
        Ok(Policy { require, public_key, skip })
    }
}

/// Two paths naming one file (a relative and an absolute path to the same key are the same key).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The check before any change: `pinned` is signed with the policy's key, and its provenance is
/// signed too and names the commit the image is labelled with. Returns what was proven, in
/// words; an environment that requires signatures refuses anything less.
pub fn check(sh: &Shell, policy: &Policy, pinned: &Pinned) -> Result<String> {
    let reference = pinned.by_digest();
    if let Some(why) = &policy.skip {
        let said =
            format!("WARNING: the signature and provenance of {reference} were NOT checked ({why}; asked by {})", crate::journal::actor());
        println!("  {said}");
        return Ok(said);
    }
    let proven = (|| -> Result<String> {
        if !policy.public_key.is_file() {
            bail!("no public key at {} (`cargo xtask keys init` creates the pair)", policy.public_key.display());
        }
        let cosign = Cosign::new(sh)?;
        cosign.verify(&policy.public_key, &reference).context("signature")?;
        let predicates =
            cosign.verified_attestations(&policy.public_key, &reference, crate::cosign::PROVENANCE_TYPE).context("provenance")?;
        let labelled = crate::crane::Crane::new(sh)?.label(&reference, REVISION_LABEL)?;
        let commits: Vec<&str> = predicates.iter().filter_map(provenance_commit).collect();
        match (&labelled, commits.as_slice()) {
            (_, []) => bail!("provenance: no SLSA provenance attestation names a source commit"),
            (None, _) => bail!("provenance: the image carries no {REVISION_LABEL} label to hold it against"),
            // Every provenance signed with the key must agree: one naming another commit is
            // contradicting evidence, not noise beside a good one.
            (Some(label), found) if found.iter().any(|c| c != label) => {
                let other: Vec<&str> = found.iter().copied().filter(|c| c != label).collect();
                bail!("provenance: an attestation names commit {} but the image was built from {label}", other.join(", "))
            }
            (Some(label), _) => Ok(format!(
                "{reference} is signed with {} and its SLSA provenance (signed too) names commit {label} (no transparency log: offline)",
                policy.public_key.display()
            )),
        }
    })();
    match proven {
        Ok(said) => {
            println!("  {said}");
            Ok(said)
        }
        Err(err) if policy.require => {
            bail!(
                "{reference} cannot be deployed here: {err:#}. This environment requires releases signed with {}",
                policy.public_key.display()
            )
        }
        Err(err) => {
            let said = format!("this environment allows unsigned images; {reference}: {err:#}");
            println!("  {said}");
            Ok(said)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_init_never_replaces_a_key_nor_makes_one_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("cosign.key"), dir.path().join("cosign.pub"));
        let password = Password("long enough".to_owned());
        may_make_key_pair(&private, &public, &password).unwrap();
        let empty = may_make_key_pair(&private, &public, &Password(String::new())).unwrap_err().to_string();
        assert!(empty.contains("COSIGN_PASSWORD is empty"), "{empty}");
        std::fs::write(&public, "a committed public key").unwrap();
        let replacing = may_make_key_pair(&private, &public, &password).unwrap_err().to_string();
        assert!(replacing.contains("cosign.pub exists") && replacing.contains("undeployable"), "{replacing}");
        std::fs::write(&private, "a private key").unwrap();
        assert!(may_make_key_pair(&private, &public, &password).unwrap_err().to_string().contains("cosign.key exists"));
    }

    #[test]
    fn provenance_names_the_commit_and_the_lock_file() {
        let source = crate::git::Source { commit: "abc123".into(), dirty: true, repository: "https://example.org/r.git".into() };
        let p = provenance(&source, "v2", "ff", "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z");
        assert_eq!(provenance_commit(&p), Some("abc123"));
        assert_eq!(p["buildDefinition"]["externalParameters"]["source"]["dirty"], true);
        assert_eq!(p["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"], "ff");
        assert_eq!(p["runDetails"]["metadata"]["finishedOn"], "2026-12-01T00:01:00Z");
    }

    use crate::chart::SupplyChain;

    fn requiring(allow_break_glass: bool) -> SupplyChain {
        SupplyChain { require_signature: true, public_key: PUBLIC_KEY.to_owned(), allow_break_glass }
    }

    #[test]
    fn the_environment_decides_unless_the_command_line_is_stricter() {
        let ask = Request::default();
        let dev = SupplyChain::default();
        assert!(!Policy::decide("dev", &dev, &ask).unwrap().require);
        assert!(Policy::decide("prod", &requiring(false), &ask).unwrap().require);
        let strict = Request { require: true, ..Default::default() };
        assert!(Policy::decide("dev", &dev, &strict).unwrap().require);
        assert_eq!(Policy::decide("dev", &dev, &ask).unwrap().public_key, crate::repo_root().join(PUBLIC_KEY));
    }

    /// Issue 19: with `requireSignature: true` from the values file, no flag weakens the check.
    #[test]
    fn a_requiring_environment_refuses_another_key_and_a_skip() {
        let other_key = Request { public_key: Some("/tmp/someone-elses.pub".into()), ..Default::default() };
        let refused = Policy::decide("prod", &requiring(false), &other_key).unwrap_err().to_string();
        assert!(refused.contains("cannot replace it here") && refused.contains("nothing was changed"), "{refused}");
        let same_key = Request { public_key: Some(crate::repo_root().join(PUBLIC_KEY)), ..Default::default() };
        assert!(Policy::decide("prod", &requiring(false), &same_key).is_ok(), "naming the environment's own key is no change");

        let skip = Request { skip: true, reason: Some("registry down".into()), ..Default::default() };
        let refused = Policy::decide("prod", &requiring(false), &skip).unwrap_err().to_string();
        assert!(refused.contains("do not allow break-glass") && refused.contains("allowBreakGlass"), "{refused}");
    }

    #[test]
    fn break_glass_needs_the_environment_s_consent_and_a_reason() {
        let no_reason = Request { skip: true, ..Default::default() };
        let refused = Policy::decide("prod", &requiring(true), &no_reason).unwrap_err().to_string();
        assert!(refused.contains("--reason"), "{refused}");
        let blank = Request { skip: true, reason: Some("  ".into()), ..Default::default() };
        assert!(Policy::decide("prod", &requiring(true), &blank).is_err(), "a blank reason is no reason");
        let why = Request { skip: true, reason: Some("INC-42: registry signing service down".into()), ..Default::default() };
        let policy = Policy::decide("prod", &requiring(true), &why).unwrap();
        assert_eq!(policy.skip.as_deref(), Some("break-glass in prod: INC-42: registry signing service down"));
    }

    #[test]
    fn an_environment_that_does_not_require_signatures_takes_the_flags() {
        let dev = SupplyChain::default();
        let skip = Request { skip: true, ..Default::default() };
        assert_eq!(Policy::decide("dev", &dev, &skip).unwrap().skip.as_deref(), Some("--insecure-skip-signature"));
        let key = Request { public_key: Some("/tmp/k.pub".into()), ..Default::default() };
        assert_eq!(Policy::decide("dev", &dev, &key).unwrap().public_key, PathBuf::from("/tmp/k.pub"));
    }
}
