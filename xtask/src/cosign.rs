//! Every cosign call shipshape makes. Signing is by key pair only, offline: no transparency log
//! (Rekor) and no certificate authority (Fulcio), so nothing leaves this machine but the
//! registry pushes; verification says it skipped the log. The key's password reaches cosign in
//! its environment (COSIGN_PASSWORD), never on a command line.
//!
//! Signatures and attestations are stored in cosign's tag-based format (`sha256-<digest>.sig`
//! and `.att` beside the image; `--new-bundle-format=false`), not as Sigstore bundles behind
//! OCI referrers (cosign 3's default): the admission controller (sigstore policy-controller
//! v0.14.0) verifies key-signed images only in that format, and `cosign verify` reads both.
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::process::read_or_explain;
use crate::tools::COSIGN;

/// The SLSA v1 provenance predicate type, as cosign names it (`--type slsaprovenance1`).
pub const PROVENANCE_TYPE: &str = "slsaprovenance1";
pub const PROVENANCE_PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// A CycloneDX SBOM, as cosign names it (`--type cyclonedx`).
pub const SBOM_TYPE: &str = "cyclonedx";
/// cosign's vulnerability scan attestation: the scanner, its database and the result.
pub const VULN_TYPE: &str = "vuln";

pub struct Cosign<'a> {
    sh: &'a Shell,
    bin: std::path::PathBuf,
}

/// A password that is never printed (Debug shows its length only).
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password({} chars)", self.0.len())
    }
}

impl<'a> Cosign<'a> {
    pub fn new(sh: &'a Shell) -> Result<Cosign<'a>> {
        Ok(Cosign { sh, bin: COSIGN.find(sh)? })
    }

    /// `cosign generate-key-pair`: `<dir>/cosign.key` (encrypted with `password`) and `<dir>/cosign.pub`.
    pub fn generate_key_pair(&self, dir: &Path, password: &Password) -> Result<()> {
        let bin = &self.bin;
        let prefix = dir.join("cosign");
        read_or_explain(cmd!(self.sh, "{bin} generate-key-pair --output-key-prefix {prefix}").env("COSIGN_PASSWORD", &password.0))
            .context("cosign generate-key-pair")?;
        Ok(())
    }

    /// Signs `reference` (`repository@sha256:...`) with `key`; the signature goes to the registry
    /// beside the image.
    pub fn sign(&self, key: &Path, password: &Password, reference: &str) -> Result<()> {
        let bin = &self.bin;
        read_or_explain(
            cmd!(
                self.sh,
                "{bin} sign --key {key} --use-signing-config=false --tlog-upload=false --new-bundle-format=false --yes {reference}"
            )
            .env("COSIGN_PASSWORD", &password.0),
        )
        .with_context(|| format!("cosign sign {reference}"))?;
        Ok(())
    }

    /// Attaches `predicate` (of cosign type `kind`: a SLSA v1 provenance body, a CycloneDX SBOM)
    /// to `reference` as a signed attestation.
    pub fn attest(&self, key: &Path, password: &Password, reference: &str, predicate: &Path, kind: &str) -> Result<()> {
        let bin = &self.bin;
        read_or_explain(
            cmd!(
                self.sh,
                "{bin} attest --key {key} --type {kind} --predicate {predicate} --use-signing-config=false --tlog-upload=false --new-bundle-format=false --yes {reference}"
            )
            .env("COSIGN_PASSWORD", &password.0),
        )
        .with_context(|| format!("cosign attest {reference}"))?;
        Ok(())
    }

    /// Checks that `reference` carries a signature made with the key whose public half is
    /// `public_key`; the error says why not (no signature, another key).
    pub fn verify(&self, public_key: &Path, reference: &str) -> Result<()> {
        let bin = &self.bin;
        read_or_explain(cmd!(self.sh, "{bin} verify --key {public_key} --insecure-ignore-tlog {reference}"))
            .map_err(|err| anyhow::anyhow!(last_line(&format!("{err:#}"))))?;
        Ok(())
    }

    /// The in-toto statements (subject and predicate) of cosign type `kind` (`slsaprovenance1`,
    /// `cyclonedx`) attached to `reference` and signed by `public_key`.
    pub fn verified_attestations(&self, public_key: &Path, reference: &str, kind: &str) -> Result<Vec<Value>> {
        let bin = &self.bin;
        let out =
            read_or_explain(cmd!(self.sh, "{bin} verify-attestation --key {public_key} --insecure-ignore-tlog --type {kind} {reference}"))
                .map_err(|err| anyhow::anyhow!(last_line(&format!("{err:#}"))))?;
        let mut statements = Vec::new();
        for line in out.lines().filter(|l| l.trim_start().starts_with('{')) {
            let envelope: Value = serde_json::from_str(line).context("reading cosign's attestation output")?;
            let payload = envelope["payload"].as_str().context("an attestation without a payload")?;
            use base64::Engine;
            let statement: Value = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(payload)?)
                .context("an attestation payload that is not an in-toto statement")?;
            if kind == PROVENANCE_TYPE && statement["predicateType"] != PROVENANCE_PREDICATE {
                bail!("an attestation of type {} where SLSA provenance v1 was asked for", statement["predicateType"]);
            }
            statements.push(statement);
        }
        Ok(statements)
    }
}

/// cosign ends its error output with the line that matters ("no signatures found", "no matching
/// signatures: ...").
fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(text).trim().trim_start_matches("Error: ").to_owned()
}
