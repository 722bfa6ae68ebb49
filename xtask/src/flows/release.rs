//! `cargo xtask release`: build model-server from this checkout, scan it, push it, sign its
//! digest and attest its SBOM and SLSA provenance. What `deploy` checks before any change
//! (signing.rs) is what this makes.
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::cluster::{app_images, docker::Docker, registry};
use crate::cosign::Cosign;
use crate::image::Pinned;
use crate::keys::password;
use crate::signing::{hex_sha256, now, provenance, REVISION_LABEL};

/// Builds, scans, pushes, signs and attests `tag` from this checkout; returns what was released.
/// Nothing is pushed when the scan refuses the image. Uncommitted changes to the image's inputs
/// are refused unless `allow_dirty`, and then the provenance names another builder
/// ([`crate::signing::UNCOMMITTED_BUILDER_ID`]), which environments that list trusted builders
/// refuse.
pub fn release(
    sh: &Shell,
    tag: &str,
    registry_host: &str,
    key: &Path,
    vuln_db: &crate::scan::Database,
    allow_dirty: bool,
) -> Result<Pinned> {
    let source = crate::git::source(sh)?;
    if source.dirty && !allow_dirty {
        let inputs = crate::git::IMAGE_INPUTS.join(" ");
        bail!(
            "uncommitted changes to what the image is built from (`git status -- {inputs}`): a release names the commit it              was built from, and this build would not be that commit. Commit them, or add --allow-dirty (its provenance              then names builder {}, which staging and prod refuse)",
            crate::signing::UNCOMMITTED_BUILDER_ID
        );
    }
    release_source(sh, &source, tag, registry_host, key, vuln_db)
}

/// [`release`] of the checkout as `source` describes it. The end-to-end tests' own way to make
/// a release whose provenance says it was built dirty, from a checkout that the tests running
/// beside it need clean.
pub fn release_source(
    sh: &Shell,
    source: &crate::git::Source,
    tag: &str,
    registry_host: &str,
    key: &Path,
    vuln_db: &crate::scan::Database,
) -> Result<Pinned> {
    let started = now();
    let clock = Instant::now();
    if !key.exists() {
        bail!("no signing key at {}: create one with `cargo xtask keys init` (or set SHIPSHAPE_COSIGN_KEY)", key.display());
    }
    crate::scan::check_database(vuln_db, k8s_openapi::jiff::Timestamp::now())?;
    let password = password()?;
    let cosign = Cosign::new(sh)?;
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
    let predicate = provenance(source, tag, &hex_sha256(&lock), &started, &now());
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), serde_json::to_vec_pretty(&predicate)?)?;
    cosign.attest(key, &password, &by_digest, file.path(), crate::cosign::PROVENANCE_TYPE)?;
    println!("released in {:.1}s", clock.elapsed().as_secs_f64());
    Ok(pinned)
}
