//! Image references, parsed in one place: `[host[:port]/]path[:tag][@algorithm:encoded]`.
//!
//! Tags and digests follow the OCI distribution spec's grammar, so a reference that a registry
//! would refuse is refused here, where it enters, before any journal entry or Helm value holds
//! it. Nothing is normalised (no `docker.io/` or `library/` added): the chart renders what it is
//! given, and comparisons that need normalising say so ([`same_content`]).
use std::fmt;

use anyhow::{bail, Result};

/// An image reference's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Everything before the tag: registry host (and port) and path.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and checks a reference (tag and digest grammar, a non-empty repository).
    pub fn parse(text: &str) -> Result<Reference> {
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (text, None),
        };
        // A ':' before the last '/' is a registry port, not a tag.
        let last_part = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_part..].rfind(':') {
            Some(i) => (&name[..last_part + i], Some(&name[last_part + i + 1..])),
            None => (name, None),
        };
        if repository.is_empty() || repository.ends_with('/') || repository.chars().any(|c| c.is_whitespace() || c.is_ascii_uppercase()) {
            bail!(
                "{text:?} is not an image reference: its repository part {repository:?} is empty, ends with '/', or has spaces or capitals"
            );
        }
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        if let Some(digest) = digest {
            check_digest(digest)?;
        }
        Ok(Reference { repository: repository.to_owned(), tag: tag.map(str::to_owned), digest: digest.map(str::to_owned) })
    }

    /// The tag, or `latest` when the reference names none (what a registry serves then).
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `repository:tag` without any digest.
    pub fn unpinned(&self) -> String {
        format!("{}:{}", self.repository, self.tag_or_latest())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Reference> {
        Reference::parse(text)
    }
}

/// The tag a reference names (`latest` when none), for reports: a reference that does not parse
/// is shown whole rather than hidden.
pub fn tag_of(reference: &str) -> String {
    Reference::parse(reference).map(|r| r.tag_or_latest().to_owned()).unwrap_or_else(|_| reference.to_owned())
}

/// A tag as the OCI distribution spec allows it: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. The error
/// quotes the tag, so advice built from it never carries shell syntax unquoted.
pub fn check_tag(tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        bail!(
            "{tag:?} is not an image tag: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-' \
             (the OCI distribution spec)"
        );
    }
    Ok(())
}

/// `algorithm:encoded`, as the OCI image spec defines a digest; sha256 and sha512 must be
/// lower-case hex of their length.
pub fn check_digest(digest: &str) -> Result<()> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        bail!("{digest:?} is not a digest: expected algorithm:hex, e.g. sha256:<64 hex digits>");
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    let hex_of = |len: usize| encoded.len() == len && encoded.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let encoded_ok = match algorithm {
        "sha256" => hex_of(64),
        "sha512" => hex_of(128),
        _ => !encoded.is_empty() && encoded.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-')),
    };
    if !algorithm_ok || !encoded_ok {
        bail!("{digest:?} is not a digest: expected algorithm:hex, e.g. sha256:<64 lower-case hex digits>");
    }
    Ok(())
}

/// An image tag pinned to the digest its registry served when a flow resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl Pinned {
    /// `repository:tag@digest`: what the chart renders and the nodes pull.
    pub fn reference(&self) -> String {
        format!("{}:{}@{}", self.repository, self.tag, self.digest)
    }

    /// `repository@digest`: exactly this content, whatever the tag says now.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Whether two references name the same content as a node lists it: `shipshape/m:1` and
/// `docker.io/shipshape/m:1` are one image, and a pinned `repository:tag@digest` is on a node
/// that lists `repository@digest`.
pub fn same_content(listed: &str, wanted: &str) -> bool {
    let normalize = |s: &str| {
        let s = s.strip_prefix("docker.io/").unwrap_or(s);
        s.strip_prefix("library/").unwrap_or(s).to_owned()
    };
    match Reference::parse(wanted) {
        Ok(Reference { repository, digest: Some(digest), .. }) => normalize(listed) == normalize(&format!("{repository}@{digest}")),
        _ => normalize(listed) == normalize(wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn references_split_with_registry_ports_and_digests() {
        let d = digest();
        let pinned = Reference::parse(&format!("localhost:5001/shipshape/model-server:v2@{d}")).unwrap();
        assert_eq!(pinned.repository, "localhost:5001/shipshape/model-server");
        assert_eq!(pinned.tag.as_deref(), Some("v2"));
        assert_eq!(pinned.digest.as_deref(), Some(d.as_str()));
        assert_eq!(pinned.to_string(), format!("localhost:5001/shipshape/model-server:v2@{d}"), "printed as given");
        let bare = Reference::parse("localhost:5001/shipshape/model-server").unwrap();
        assert_eq!(
            (bare.tag_or_latest(), bare.repository.as_str()),
            ("latest", "localhost:5001/shipshape/model-server"),
            "a port is not a tag"
        );
        assert_eq!(Reference::parse("shipshape/model-server:0.1.0-abc").unwrap().tag.as_deref(), Some("0.1.0-abc"));
        assert_eq!(Reference::parse("shipshape/model-server:v1").unwrap().digest, None);
        assert_eq!(Reference::parse(&format!("r/m@{d}")).unwrap().unpinned(), "r/m:latest");
    }

    #[test]
    fn tags_outside_the_oci_grammar_are_refused_and_quoted() {
        for good in ["v1", "0.1.0-abc", "_x", "A.b-c_d", &"t".repeat(128)] {
            check_tag(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", ".v1", "-v1", "v1;rm -rf /", "v 1", "v1/x", "ü", &"t".repeat(129)] {
            let error = check_tag(bad).expect_err(bad).to_string();
            assert!(error.starts_with(&format!("{bad:?}")), "the tag is quoted: {error}");
        }
        assert!(Reference::parse("r/m:v1;rm").is_err());
        assert!(Reference::parse("R/m:v1").is_err(), "repositories are lower case");
        assert!(Reference::parse(":v1").is_err());
    }

    #[test]
    fn digests_follow_the_image_spec() {
        check_digest(&digest()).unwrap();
        check_digest(&format!("sha512:{}", "0".repeat(128))).unwrap();
        check_digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8").unwrap();
        for bad in ["sha256", "sha256:abc", &format!("sha256:{}", "A".repeat(64)), ":x", "sha256:"] {
            assert!(check_digest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_on_a_node_is_matched_by_digest_or_by_normalised_name() {
        let d = digest();
        assert!(same_content(&format!("localhost:5001/s/m@{d}"), &format!("localhost:5001/s/m:v2@{d}")));
        assert!(!same_content(&format!("localhost:5001/s/m@{d}"), &format!("localhost:5001/s/other:v2@{d}")));
        assert!(same_content("docker.io/library/postgres:16", "postgres:16"));
        assert!(!same_content("postgres:15", "postgres:16"));
    }
}
