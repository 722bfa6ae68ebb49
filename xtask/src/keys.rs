//! The key pairs releases are signed with: `keys init` makes the first, `keys rotate` a new one
//! beside it. The private half lives outside the repository, encrypted with $COSIGN_PASSWORD;
//! the public half is committed under deploy/keys/ and listed in the environments'
//! `supplyChain.publicKeys` (what they trust: signing.rs).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_openapi::jiff::Timestamp;
use xshell::Shell;

use crate::cosign::{Cosign, Password};

/// The first public key, the one the chart's values list by default.
pub const PUBLIC_KEY: &str = "deploy/keys/cosign.pub";

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

/// `keys init`: creates the first key pair: the private key at `private` (mode 600), the public key at `public`.
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

/// What `keys rotate` made, and where the old private key went.
pub struct Rotated {
    pub retired_private: PathBuf,
    pub public: PathBuf,
}

/// `keys rotate`: a new key pair, signing from now on. The old private key is kept beside the
/// new one (renamed, never deleted: re-signing what must stay deployable may need it); the new
/// public key goes to `public`, which must not exist. Nothing changes what environments trust:
/// that is a reviewed change to their values files, printed here.
pub fn rotate_keys(sh: &Shell, private: &Path, public: &Path, now: Timestamp) -> Result<Rotated> {
    let password = password()?;
    if password.0.is_empty() {
        bail!("COSIGN_PASSWORD is empty: a private key without a password signs for anyone who can read the file");
    }
    if !private.is_file() {
        bail!("no signing key at {} to rotate: `cargo xtask keys init` makes the first pair", private.display());
    }
    if public.exists() {
        bail!("{} exists: shipshape never replaces a public key; name another with --public-key", public.display());
    }
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let retired =
        private.with_file_name(format!("{}.retired-{stamp}", private.file_name().context("a key path names a file")?.to_string_lossy()));
    let next = private.with_file_name(format!("{}.next", private.file_name().unwrap_or_default().to_string_lossy()));
    let scratch = tempfile::tempdir()?;
    Cosign::new(sh)?.generate_key_pair(scratch.path(), &password)?;
    // The new private key is complete beside the old before either is renamed: a failure here
    // leaves the old key signing, as before.
    std::fs::copy(scratch.path().join("cosign.key"), &next)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o600))?;
    std::fs::create_dir_all(public.parent().context("a key path needs a directory")?)?;
    std::fs::copy(scratch.path().join("cosign.pub"), public)?;
    std::fs::rename(private, &retired)?;
    if let Err(err) = std::fs::rename(&next, private) {
        std::fs::rename(&retired, private)?;
        return Err(err).context("putting the new private key in place (the old one signs, as before)");
    }
    Ok(Rotated { retired_private: retired, public: public.to_owned() })
}

/// Where `keys rotate` puts the new public key unless told: deploy/keys/cosign-<date>.pub.
pub fn next_public_key(now: Timestamp) -> PathBuf {
    crate::repo_root().join(format!("deploy/keys/cosign-{}.pub", now.strftime("%Y-%m-%d")))
}

/// The keys each environment's values file lists now (the chart's default where it lists none),
/// as (file, paths).
pub fn listed_by_environments() -> Result<Vec<(String, Vec<String>)>> {
    let mut listed = Vec::new();
    for env in crate::chart::Env::ALL {
        let values = env.file_values()?;
        let keys: Vec<String> = match values["supplyChain"]["publicKeys"].as_array() {
            Some(keys) => keys.iter().filter_map(|k| k["path"].as_str().map(str::to_owned)).collect(),
            None => vec![PUBLIC_KEY.to_owned()],
        };
        listed.push((format!("deploy/envs/{}.yaml", env.name()), keys));
    }
    Ok(listed)
}

/// What to change, through review, for environments to trust the new key: printed by `keys
/// rotate` with each environment's file and the keys it lists now.
pub fn rotation_next_steps(public: &Path, listed: &[(String, Vec<String>)]) -> String {
    let root = crate::repo_root();
    let new = public.strip_prefix(&root).unwrap_or(public).display().to_string();
    let mut said = format!(
        "Next, through review, before a release signed with the new key must deploy: list {new} first in \
         supplyChain.publicKeys of every environment, keeping the keys it lists now. Releases signed with an old key \
         (rollbacks included) stay deployable while that key is listed and within its window; once none must deploy, \
         end its trust with notAfter (RFC 3339) or remove it.\n"
    );
    for (file, keys) in listed {
        said.push_str(&format!("  {file}:\n    supplyChain:\n      publicKeys:\n        - path: {new}\n"));
        for key in keys {
            said.push_str(&format!("        - path: {key}\n"));
        }
    }
    said
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
    fn the_next_steps_keep_the_old_keys_and_put_the_new_one_first() {
        let new = crate::repo_root().join("deploy/keys/cosign-2026-12-05.pub");
        let said = rotation_next_steps(&new, &[("deploy/envs/prod.yaml".to_owned(), vec!["deploy/keys/cosign.pub".to_owned()])]);
        let block = "  deploy/envs/prod.yaml:\n    supplyChain:\n      publicKeys:\n        - path: deploy/keys/cosign-2026-12-05.pub\n        - path: deploy/keys/cosign.pub\n";
        assert!(said.contains(block), "{said}");
        assert_eq!(next_public_key("2026-12-05T10:00:00Z".parse().unwrap()), new);
    }
}
