//! Every crane call shipshape makes: the registry side of "what runs is what was checked".
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;
use crate::tools::CRANE;

pub struct Crane<'a> {
    sh: &'a Shell,
    bin: std::path::PathBuf,
}

impl<'a> Crane<'a> {
    pub fn new(sh: &'a Shell) -> Result<Crane<'a>> {
        Ok(Crane { sh, bin: CRANE.find(sh)? })
    }

    /// The digest (`sha256:...`) the registry serves for `reference` (`repository:tag`). crane
    /// reads Docker's credentials, and talks plain HTTP to localhost and private addresses.
    pub fn digest(&self, reference: &str) -> Result<String> {
        let bin = &self.bin;
        let out =
            read_or_explain(cmd!(self.sh, "{bin} digest {reference}")).with_context(|| format!("resolving {reference} to a digest"))?;
        let digest = out.trim().to_owned();
        if !is_digest(&digest) {
            bail!("crane answered {digest:?} for {reference}, not a sha256 digest");
        }
        Ok(digest)
    }
}

impl Crane<'_> {
    /// The value of label `name` in the image's config, if it has one.
    pub fn label(&self, reference: &str, name: &str) -> Result<Option<String>> {
        let bin = &self.bin;
        let out =
            read_or_explain(cmd!(self.sh, "{bin} config {reference}")).with_context(|| format!("reading the config of {reference}"))?;
        let config: serde_json::Value = serde_json::from_str(&out).context("reading crane config's JSON")?;
        Ok(config["config"]["Labels"][name].as_str().map(str::to_owned))
    }
}

/// `sha256:` and 64 lowercase hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_sha256_hex() {
        assert!(super::is_digest(&format!("sha256:{}", "ab".repeat(32))));
        assert!(!super::is_digest("sha256:xyz"));
        assert!(!super::is_digest("latest"));
    }
}
