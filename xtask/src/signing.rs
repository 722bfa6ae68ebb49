//! Signed releases: the key pair (`keys init`), `release` (build, push, sign, attest SLSA
//! provenance), and the check every command that changes what runs makes before any change: the
//! digest it resolved carries a signature and a provenance attestation made with the
//! environment's key, and the provenance names the commit the image says it was built from.
//!
//! Keys only, offline: no transparency log (Rekor) and no certificate authority (Fulcio).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;
use xshell::Shell;

use crate::cli::{Keys, KeysAction, ReleaseImage, SignatureArgs};
use crate::cluster::{app_images, docker::Docker, registry};
use crate::cosign::{Cosign, Password};
use crate::flows::images::Pinned;

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
fn password() -> Result<Password> {
    match std::env::var("COSIGN_PASSWORD") {
        Ok(password) => Ok(Password(password)),
        Err(_) => bail!(
            "COSIGN_PASSWORD is not set: the signing key's password comes from the environment, never the command line. \
             In a shell: `read -rs COSIGN_PASSWORD && export COSIGN_PASSWORD`; in CI: a secret mapped to that variable"
        ),
    }
}

impl Keys {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.action {
            KeysAction::Init => init_keys(sh, &private_key_path()?, &crate::repo_root().join(PUBLIC_KEY)).map(drop),
        }
    }
}

/// Creates the key pair: the private key at `private` (mode 600), the public key at `public`.
pub fn init_keys(sh: &Shell, private: &Path, public: &Path) -> Result<()> {
    if private.exists() {
        bail!("{} exists: shipshape never replaces a signing key. Delete it yourself to make a new one", private.display());
    }
    let password = password()?;
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

impl ReleaseImage {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let database = crate::scan::database(self.vuln_db)?;
        let released = release(sh, &self.tag, &self.registry, &private_key_path()?, &database)?;
        println!("released {}", released.reference());
        println!("  deploy it: cargo xtask deploy --tag {} (or canary start / bluegreen start)", self.tag);
        Ok(())
    }
}

/// Builds, scans, pushes, signs and attests `tag`; returns what was released. Nothing is pushed
/// when the scan refuses the image.
pub fn release(sh: &Shell, tag: &str, registry_host: &str, key: &Path, vuln_db: &Path) -> Result<Pinned> {
    let started = now();
    let clock = Instant::now();
    if !key.exists() {
        bail!("no signing key at {}: create one with `cargo xtask keys init` (or set SHIPSHAPE_COSIGN_KEY)", key.display());
    }
    crate::scan::check_database(vuln_db)?;
    let password = password()?;
    let cosign = Cosign::new(sh)?;
    let source = crate::git::source(sh)?;
    let docker = Docker::connect(sh)?;
    if registry_host == registry::HOST {
        registry::ensure_running(sh, &docker)?;
    }
    println!("[1/6] build model-server at {}{}", source.commit, if source.dirty { " (with uncommitted changes)" } else { "" });
    let built = app_images::build_model_server(sh, &docker)?;
    let local = app_images::relabel(&docker, &built, tag, &[(REVISION_LABEL, &source.commit)])?;
    println!("[2/6] scan for vulnerabilities (HIGH and CRITICAL refuse the release)");
    let scratch = tempfile::tempdir()?;
    let archive = scratch.path().join("image.tar");
    docker.save_tags(&[local.as_str()], &archive, &crate::cluster::stage::Stages::new()?.log_path("release-scan")?)?;
    let scanned = crate::scan::scan(sh, &archive, vuln_db)?;
    crate::scan::gate(&scanned).context("nothing was pushed or signed")?;
    println!("[3/6] push");
    let pushed = app_images::push(&docker, &local, registry_host)?;
    let pinned = pushed.pinned();
    let by_digest = pinned.by_digest();
    println!("  {by_digest}");
    println!("[4/6] sign {} (key {}; offline: no transparency log, no certificate authority)", pinned.digest, key.display());
    cosign.sign(key, &password, &by_digest)?;
    println!("[5/6] attest the SBOM (CycloneDX, {} components)", scanned.sbom["components"].as_array().map(Vec::len).unwrap_or(0));
    let sbom = scratch.path().join("sbom.cdx.json");
    std::fs::write(&sbom, serde_json::to_vec(&scanned.sbom)?)?;
    cosign.attest(key, &password, &by_digest, &sbom, crate::cosign::SBOM_TYPE)?;
    println!("[6/6] attest SLSA v1 provenance");
    let lock = std::fs::read(crate::repo_root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let predicate = provenance(&source, tag, &hex_sha256(&lock), &started, &now());
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), serde_json::to_vec_pretty(&predicate)?)?;
    cosign.attest(key, &password, &by_digest, file.path(), crate::cosign::PROVENANCE_TYPE)?;
    println!("released in {:.1}s", clock.elapsed().as_secs_f64());
    Ok(pinned)
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
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

/// What an environment asks of an image before it runs (values `supplyChain.*`), with the
/// command line's say.
pub struct Policy {
    pub require: bool,
    pub public_key: PathBuf,
    pub skip: bool,
}

impl Policy {
    pub fn new(values: &Value, args: &SignatureArgs) -> Policy {
        let configured = values["supplyChain"]["publicKey"].as_str().unwrap_or(PUBLIC_KEY);
        let public_key = args.public_key.clone().unwrap_or_else(|| crate::repo_root().join(configured));
        let require = args.require_signature || values["supplyChain"]["requireSignature"].as_bool().unwrap_or(false);
        Policy { require, public_key, skip: args.insecure_skip_signature }
    }
}

/// The check before any change: `pinned` is signed with the policy's key, and its provenance is
/// signed too and names the commit the image is labelled with. Returns what was proven, in
/// words; an environment that requires signatures refuses anything less.
pub fn check(sh: &Shell, policy: &Policy, pinned: &Pinned) -> Result<String> {
    let reference = pinned.by_digest();
    if policy.skip {
        let said = format!(
            "WARNING: the signature and provenance of {reference} were NOT checked (--insecure-skip-signature, by {})",
            crate::journal::actor()
        );
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
    fn provenance_names_the_commit_and_the_lock_file() {
        let source = crate::git::Source { commit: "abc123".into(), dirty: true, repository: "https://example.org/r.git".into() };
        let p = provenance(&source, "v2", "ff", "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z");
        assert_eq!(provenance_commit(&p), Some("abc123"));
        assert_eq!(p["buildDefinition"]["externalParameters"]["source"]["dirty"], true);
        assert_eq!(p["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"], "ff");
        assert_eq!(p["runDetails"]["metadata"]["finishedOn"], "2026-12-01T00:01:00Z");
    }

    #[test]
    fn the_environment_decides_unless_the_command_line_is_stricter() {
        let args = SignatureArgs::default();
        assert!(!Policy::new(&json!({}), &args).require);
        assert!(Policy::new(&json!({"supplyChain": {"requireSignature": true}}), &args).require);
        let strict = SignatureArgs { require_signature: true, ..Default::default() };
        assert!(Policy::new(&json!({}), &strict).require);
    }
}
