//! `cargo xtask release`: build model-server from this checkout, scan it, push it, sign its
//! digest and attest its SBOM and SLSA provenance. What `deploy` checks before any change
//! (signing.rs) is what this makes.
//!
//! In one command on a person's machine, or in two halves for CI, where the build must not see
//! the signing key: `release build --out DIR` builds and scans with no secret at all and leaves
//! the image archive and its build record in DIR (the workflow's artifact between its jobs);
//! `release publish --from DIR` builds nothing: it loads that archive, checks it is the image
//! the record describes and that this checkout is the commit it was built from, then pushes,
//! signs and attests.
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xshell::Shell;

use crate::cluster::{app_images, docker::Docker, registry};
use crate::cosign::Cosign;
use crate::git::Source;
use crate::image::Pinned;
use crate::keys::password;
use crate::scan::Database;
use crate::signing::{hex_sha256, now, provenance, REVISION_LABEL};

/// Builds, scans, pushes, signs and attests `tag` from this checkout; returns what was released.
/// Nothing is pushed when the scan refuses the image. Uncommitted changes to the image's inputs
/// are refused unless `allow_dirty`, and then the provenance names another builder
/// ([`crate::signing::UNCOMMITTED_BUILDER_ID`]), which environments that list trusted builders
/// refuse.
pub fn release(sh: &Shell, tag: &str, registry_host: &str, key: &Path, vuln_db: &Database, allow_dirty: bool) -> Result<Pinned> {
    let source = checkout_source(sh, allow_dirty)?;
    release_source(sh, &source, tag, registry_host, key, vuln_db)
}

/// [`release`] of the checkout as `source` describes it. The end-to-end tests' own way to make
/// a release whose provenance says it was built dirty, from a checkout that the tests running
/// beside it need clean.
pub fn release_source(sh: &Shell, source: &Source, tag: &str, registry_host: &str, key: &Path, vuln_db: &Database) -> Result<Pinned> {
    let clock = Instant::now();
    if !key.exists() {
        bail!("no signing key at {}: create one with `cargo xtask keys init` (or set SHIPSHAPE_COSIGN_KEY)", key.display());
    }
    let password = password()?;
    let built = build_and_scan(sh, source, tag, vuln_db, 7)?;
    let docker = Docker::connect(sh)?;
    if registry_host == registry::HOST {
        registry::ensure_running(sh, &docker)?;
    }
    println!("[3/7] push");
    let pinned = app_images::push(&docker, &built.local, registry_host)?.pinned();
    println!("  {}", pinned.by_digest());
    sign_and_attest(sh, key, &password, &pinned, &built.record, &built.sbom, 4)?;
    println!("released in {:.1}s", clock.elapsed().as_secs_f64());
    Ok(pinned)
}

/// What `release build` knows of its build and `release publish` needs to sign it: written as
/// `record.json` beside the image archive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub tag: String,
    /// `docker image inspect`'s ID (the digest of the image's config): what `publish` holds the
    /// archive it loads against.
    pub image_id: String,
    pub source: Source,
    pub cargo_lock_sha256: String,
    pub started: String,
    pub finished: String,
    /// The vulnerability scan, as attested (cosign's vuln predicate).
    pub scan: Value,
}

const RECORD: &str = "record.json";
const ARCHIVE: &str = "image.tar";
const SBOM: &str = "sbom.cdx.json";

/// `release build`: builds and scans `tag` from this checkout, with no key and no registry, and
/// leaves in `out` the image archive, its CycloneDX SBOM and the build record. Nothing is
/// written when the scan refuses the image.
pub fn build_to(sh: &Shell, tag: &str, vuln_db: &Database, allow_dirty: bool, out: &Path) -> Result<BuildRecord> {
    let source = checkout_source(sh, allow_dirty)?;
    let built = build_and_scan(sh, &source, tag, vuln_db, 3)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!("[3/3] save the image, its SBOM and the build record in {}", out.display());
    let docker = Docker::connect(sh)?;
    docker.save_tags(&[built.local.as_str()], &out.join(ARCHIVE), &crate::cluster::stage::Stages::new()?.log_path("release-save")?)?;
    std::fs::write(out.join(SBOM), serde_json::to_vec(&built.sbom)?)?;
    std::fs::write(out.join(RECORD), serde_json::to_vec_pretty(&built.record)?)?;
    Ok(built.record)
}

/// `release publish`: what `release build` left in `from`, checked, then pushed to
/// `registry_host`, signed and attested with `key`. Builds nothing.
pub fn publish_from(sh: &Shell, from: &Path, registry_host: &str, key: &Path) -> Result<Pinned> {
    let clock = Instant::now();
    let record: BuildRecord = serde_json::from_slice(
        &std::fs::read(from.join(RECORD))
            .with_context(|| format!("reading {} (made by `release build --out`)", from.join(RECORD).display()))?,
    )
    .context("reading the build record")?;
    let sbom: Value = serde_json::from_slice(&std::fs::read(from.join(SBOM)).context("reading the SBOM `release build` wrote")?)?;
    if !key.exists() {
        bail!("no signing key at {}: create one with `cargo xtask keys init` (or set SHIPSHAPE_COSIGN_KEY)", key.display());
    }
    let password = password()?;
    // The provenance this job signs names its checkout: it must be the build's.
    let here = crate::git::source(sh)?;
    if here.commit != record.source.commit {
        bail!(
            "this checkout is commit {} but the image was built from {}: publish from the build's commit (in a workflow, \
             check out the same sha in both jobs)",
            here.commit,
            record.source.commit
        );
    }
    let docker = Docker::connect(sh)?;
    println!("[1/6] load {} and check it is the image built", from.join(ARCHIVE).display());
    docker.load(&from.join(ARCHIVE), &crate::cluster::stage::Stages::new()?.log_path("release-load")?)?;
    let local = format!("{}:{}", app_images::MODEL_SERVER_REPOSITORY, record.tag);
    let loaded = docker.image_id(&local)?;
    if loaded != record.image_id {
        bail!("the archive holds image {loaded}, but the build record says {}: nothing was pushed or signed", record.image_id);
    }
    if registry_host == registry::HOST {
        registry::ensure_running(sh, &docker)?;
    }
    println!("[2/6] push");
    let pinned = app_images::push(&docker, &local, registry_host)?.pinned();
    println!("  {}", pinned.by_digest());
    sign_and_attest(sh, key, &password, &pinned, &record, &sbom, 3)?;
    println!("published in {:.1}s", clock.elapsed().as_secs_f64());
    Ok(pinned)
}

/// This checkout as a release's source; uncommitted changes to the image's inputs are refused
/// unless `allow_dirty`.
fn checkout_source(sh: &Shell, allow_dirty: bool) -> Result<Source> {
    let source = crate::git::source(sh)?;
    if source.dirty && !allow_dirty {
        let inputs = crate::git::IMAGE_INPUTS.join(" ");
        bail!(
            "uncommitted changes to what the image is built from (`git status -- {inputs}`): a release names the commit it \
             was built from, and this build would not be that commit. Commit them, or add --allow-dirty (its provenance \
             then names builder {}, which staging and prod refuse)",
            crate::signing::UNCOMMITTED_BUILDER_ID
        );
    }
    Ok(source)
}

/// A built and scanned image, under its local tag.
struct Built {
    local: String,
    sbom: Value,
    record: BuildRecord,
}

/// Steps 1 and 2 of `steps`: build the image labelled with its commit, then the vulnerability
/// gate (refused: nothing leaves this machine).
fn build_and_scan(sh: &Shell, source: &Source, tag: &str, vuln_db: &Database, steps: u32) -> Result<Built> {
    let started = now();
    crate::scan::check_database(vuln_db, k8s_openapi::jiff::Timestamp::now())?;
    let docker = Docker::connect(sh)?;
    println!("[1/{steps}] build model-server at {}{}", source.commit, if source.dirty { " (with uncommitted changes)" } else { "" });
    let built = app_images::build_model_server(sh, &docker)?;
    let local = app_images::relabel(&docker, &built, tag, &[(REVISION_LABEL, &source.commit)])?;
    println!("[2/{steps}] scan for vulnerabilities with Trivy (HIGH, CRITICAL and unscored refuse the release)");
    let scratch = tempfile::tempdir()?;
    let archive = scratch.path().join("image.tar");
    docker.save_tags(&[local.as_str()], &archive, &crate::cluster::stage::Stages::new()?.log_path("release-scan")?)?;
    let scanned = crate::scan::scan(sh, &archive, vuln_db)?;
    crate::scan::gate(&scanned).context("nothing was pushed or signed")?;
    let lock = std::fs::read(crate::repo_root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let record = BuildRecord {
        tag: tag.to_owned(),
        image_id: docker.image_id(&local)?,
        source: source.clone(),
        cargo_lock_sha256: hex_sha256(&lock),
        started,
        finished: now(),
        scan: scanned.attestation,
    };
    Ok(Built { local, sbom: scanned.sbom, record })
}

/// The last four steps, numbered from `first`: sign the pushed digest, attest the SBOM, the
/// vulnerability scan and the SLSA provenance of `record`'s build.
fn sign_and_attest(
    sh: &Shell,
    key: &Path,
    password: &crate::cosign::Password,
    pinned: &Pinned,
    record: &BuildRecord,
    sbom: &Value,
    first: u32,
) -> Result<()> {
    let cosign = Cosign::new(sh)?;
    let total = first + 3;
    let by_digest = pinned.by_digest();
    println!("[{first}/{total}] sign {} (key {}; offline: no transparency log, no certificate authority)", pinned.digest, key.display());
    cosign.sign(key, password, &by_digest)?;
    println!(
        "[{}/{total}] attest the SBOM (CycloneDX, {} components)",
        first + 1,
        sbom["components"].as_array().map(Vec::len).unwrap_or(0)
    );
    let scratch = tempfile::tempdir()?;
    let sbom_file = scratch.path().join(SBOM);
    std::fs::write(&sbom_file, serde_json::to_vec(sbom)?)?;
    cosign.attest(key, password, &by_digest, &sbom_file, crate::cosign::SBOM_TYPE)?;
    println!("[{}/{total}] attest the vulnerability scan (Trivy, its database's digest and date)", first + 2);
    let scan_file = scratch.path().join("scan.json");
    std::fs::write(&scan_file, serde_json::to_vec(&record.scan)?)?;
    cosign.attest(key, password, &by_digest, &scan_file, crate::cosign::VULN_TYPE)?;
    println!("[{total}/{total}] attest SLSA v1 provenance");
    let predicate = provenance(&record.source, &record.tag, &record.cargo_lock_sha256, &record.started, &record.finished);
    let file = scratch.path().join("provenance.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&predicate)?)?;
    cosign.attest(key, password, &by_digest, &file, crate::cosign::PROVENANCE_TYPE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_record_reads_back_as_written() {
        let record = BuildRecord {
            tag: "v3".into(),
            image_id: "sha256:abc".into(),
            source: Source {
                commit: "c0ffee".into(),
                dirty: false,
                repository: "https://example.org/r.git".into(),
                git_ref: "refs/heads/main".into(),
            },
            cargo_lock_sha256: "ff".into(),
            started: "2026-12-05T00:00:00Z".into(),
            finished: "2026-12-05T00:02:00Z".into(),
            scan: serde_json::json!({"metadata": {"scanFinishedOn": "2026-12-05T00:01:00Z"}}),
        };
        let written = serde_json::to_vec_pretty(&record).unwrap();
        assert_eq!(serde_json::from_slice::<BuildRecord>(&written).unwrap(), record);
    }
}
