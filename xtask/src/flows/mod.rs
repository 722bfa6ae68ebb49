//! The runbooks' paths, one module each. Every flow is a list of named steps (the plan): with
//! `--dry-run` the plan is printed and nothing changes; otherwise each step is announced, timed
//! and written to the journal in the cluster as it runs, under a Lease that keeps a second flow
//! off the same release. A failing flow runs its compensation so stable keeps serving.
pub mod admission;
pub mod analysis;
pub mod bluegreen;
pub mod canary;
pub mod deploy;
pub mod diff;
pub mod doctor;
pub mod environments;
pub mod findings;
pub mod handover;
pub mod images;
pub mod ownership;
pub mod preflight;
pub mod release;
pub mod reload;
pub mod restart;
pub mod rollback;
pub mod rotate;
mod run;
pub mod sealed;
pub mod status;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use run::{print_plan, step, Changes, Ending, Flow, Run, Step, Undo, HELM_REVISION_FACT, ROLLOUT_TIMEOUT};

use crate::chart::{self, Env, Variant};
use crate::helm::ReleaseSpec;

/// Which release on which cluster a flow works on.
#[derive(Clone, Debug)]
pub struct Target {
    pub env: Env,
    pub namespace: String,
    pub release: String,
    pub kubeconfig: PathBuf,
    /// The kubeconfig context: `--context`, else the one the environment's values name, else
    /// (None) the kubeconfig's current context.
    pub context: Option<String>,
}

impl Target {
    /// The environment's release in its namespace (or `namespace`), on the cluster `kubeconfig`
    /// (given, else $KUBECONFIG, else ~/.kube/config, else the local cluster's) reaches through
    /// `context` or the context the environment names. A `context` other than the one the
    /// environment names is refused: an environment's values never reach another cluster.
    pub fn new(env: Env, namespace: Option<String>, kubeconfig: Option<&Path>, context: Option<String>) -> Result<Target> {
        let named = env.cluster_context()?;
        let context = match (context, named) {
            (Some(given), Some(named)) if given != named => anyhow::bail!(
                "deploy/envs/{}.yaml names cluster context {named}; --context {given} is another cluster: refused (nothing was \
                 changed). Leave --context out, or use the kubeconfig that has context {named}",
                env.name()
            ),
            (given, named) => given.or(named),
        };
        Ok(Target {
            env,
            namespace: namespace.unwrap_or_else(|| env.namespace()),
            release: chart::RELEASE_NAME.to_owned(),
            kubeconfig: resolve_kubeconfig(kubeconfig)?,
            context,
        })
    }

    /// The kubeconfig and context every call of the flow uses.
    pub fn access(&self) -> crate::k8s::ClusterAccess {
        crate::k8s::ClusterAccess { kubeconfig: self.kubeconfig.clone(), context: self.context.clone() }
    }
}

/// Values for this release on top of the environment's, as helm takes them (`--set`,
/// `--set-string`, `-f`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Typed as YAML types them.
    pub set: Vec<(String, String)>,
    /// Kept as strings.
    pub set_string: Vec<(String, String)>,
    pub files: Vec<PathBuf>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.set_string.is_empty() && self.files.is_empty()
    }

    /// `release` with these values after its own: files, then strings, then typed values.
    fn applied_to(&self, release: &ReleaseSpec) -> ReleaseSpec {
        let mut release = release.clone();
        release.values_files.extend(self.files.iter().cloned());
        release.set.extend(self.set_string.iter().cloned());
        release.set_typed.extend(self.set.iter().cloned());
        release
    }
}

/// The values a standard deploy sets itself (the tag it resolved and verified, its digest), the
/// environment's signature policy, and the shapes other flows make (a canary, a colour: their
/// flows check their images; a deploy's values would run one unchecked); neither `--set` nor a
/// values file may touch them. `image.repository` is the user's: the registry the tag is
/// resolved and checked in.
pub const DEPLOY_MANAGED_VALUES: &[&str] = &["image.tag", "imageDigests", "supplyChain", "canary", "blueGreen"];

/// The values progressive flows set at every step, and the signature policy; `--set` may not
/// touch them.
pub const FLOW_MANAGED_VALUES: &[&str] = &["image", "imageDigests", "replicaCount", "canary", "blueGreen", "supplyChain"];

/// The first of the `managed` keys (dotted paths) whose value in `planned` (the environment's
/// values with the user's overrides, as Helm merged them) differs from the environment's own.
pub fn changed_managed_key<'m>(planned: &serde_json::Value, environment: &serde_json::Value, managed: &[&'m str]) -> Option<&'m str> {
    managed.iter().copied().find(|key| {
        let pointer = format!("/{}", key.replace('.', "/"));
        planned.pointer(&pointer) != environment.pointer(&pointer)
    })
}

/// The given kubeconfig (`--kubeconfig`, or $KUBECONFIG, which the command line reads into the
/// same option), else ~/.kube/config, else the local cluster `cargo xtask up` made. Every flow
/// prints which one it uses.
fn resolve_kubeconfig(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        if path.to_string_lossy().contains(':') {
            anyhow::bail!("KUBECONFIG lists several files ({}); pass one with --kubeconfig", path.display());
        }
        return Ok(path.to_path_buf());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let default = Path::new(&home).join(".kube/config");
        if default.exists() {
            return Ok(default);
        }
    }
    let local = crate::cache::root()?.join("clusters/shipshape/kubeconfig");
    if local.exists() {
        return Ok(local);
    }
    anyhow::bail!("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create the local cluster with `cargo xtask up`")
}

impl Target {
    /// The chart release for this target's environment (standard shape) with `set` values.
    pub fn chart_release(&self, tag: Option<&str>) -> ReleaseSpec {
        let mut release = chart::release_spec(self.env, Variant::Stable, tag);
        release.namespace = self.namespace.clone();
        release.name = self.release.clone();
        release
    }

    pub fn lease_name(&self) -> String {
        format!("shipshape-lock-{}", self.release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig() -> PathBuf {
        PathBuf::from("/tmp/shipshape-test-kubeconfig")
    }

    /// deploy/envs/prod.yaml names prod-cluster; dev names none.
    #[test]
    fn an_environment_s_cluster_is_the_context_its_values_name_and_no_other() {
        let prod = Target::new(Env::Prod, None, Some(&kubeconfig()), None).unwrap();
        assert_eq!((prod.context.as_deref(), prod.namespace.as_str()), (Some("prod-cluster"), Env::Prod.namespace().as_str()));
        assert!(Target::new(Env::Prod, None, Some(&kubeconfig()), Some("prod-cluster".into())).is_ok(), "the same one, given");
        let refused = Target::new(Env::Prod, None, Some(&kubeconfig()), Some("staging-cluster".into())).unwrap_err().to_string();
        assert!(refused.contains("names cluster context prod-cluster") && refused.contains("nothing was changed"), "{refused}");

        let dev = Target::new(Env::Dev, Some("mine".into()), Some(&kubeconfig()), None).unwrap();
        assert_eq!((dev.context, dev.namespace.as_str()), (None, "mine"), "dev: the kubeconfig's current context");
        let chosen = Target::new(Env::Dev, None, Some(&kubeconfig()), Some("kind-x".into())).unwrap();
        assert_eq!(chosen.context.as_deref(), Some("kind-x"));
    }

    #[test]
    fn a_kubeconfig_list_is_refused_with_what_to_pass() {
        let said = resolve_kubeconfig(Some(Path::new("/a/config:/b/config"))).unwrap_err().to_string();
        assert!(said.contains("lists several files") && said.contains("--kubeconfig"), "{said}");
        assert_eq!(resolve_kubeconfig(Some(Path::new("/a/config"))).unwrap(), PathBuf::from("/a/config"));
    }

    /// The user's values come after the environment's, as helm applies files and flags in order.
    #[test]
    fn a_managed_value_changed_by_any_route_is_found_by_what_helm_made_of_it() {
        let environment = serde_json::json!({"image": {"repository": "r", "tag": ""}, "imageDigests": {}, "canary": {"enabled": false}});
        // `--set-string env.modelVersion=x,imageDigests.v1\.2\.3=sha256:other`: Helm's two keys.
        let smuggled = serde_json::json!({"image": {"repository": "r", "tag": ""}, "imageDigests": {"v1.2.3": "sha256:other"}, "canary": {"enabled": false}, "env": {"modelVersion": "x"}});
        assert_eq!(changed_managed_key(&smuggled, &environment, DEPLOY_MANAGED_VALUES), Some("imageDigests"));
        // A values file that starts a canary.
        let canary = serde_json::json!({"image": {"repository": "r", "tag": ""}, "imageDigests": {}, "canary": {"enabled": true}});
        assert_eq!(changed_managed_key(&canary, &environment, DEPLOY_MANAGED_VALUES), Some("canary"));
        // The user's own keys, the registry included, are theirs.
        let theirs = serde_json::json!({"image": {"repository": "other", "tag": ""}, "imageDigests": {}, "canary": {"enabled": false}, "replicaCount": 3});
        assert_eq!(changed_managed_key(&theirs, &environment, DEPLOY_MANAGED_VALUES), None);
        assert_eq!(changed_managed_key(&theirs, &environment, FLOW_MANAGED_VALUES), Some("image"), "a progressive flow's own");
    }

    #[test]
    fn the_user_s_values_apply_after_the_environment_s() {
        let prod = Target::new(Env::Prod, Some("p".into()), Some(&kubeconfig()), None).unwrap();
        let release = prod.chart_release(Some("v2"));
        assert_eq!((release.namespace.as_str(), release.name.as_str()), ("p", chart::RELEASE_NAME));
        let overrides = Overrides {
            set: vec![("replicaCount".into(), "12".into())],
            set_string: vec![("image.repository".into(), "localhost:5001/shipshape/model-server".into())],
            files: vec![PathBuf::from("/tmp/cluster.yaml")],
        };
        let applied = overrides.applied_to(&release);
        assert_eq!(applied.values_files.last(), Some(&PathBuf::from("/tmp/cluster.yaml")), "after deploy/envs/prod.yaml");
        assert_eq!(applied.values_files[..release.values_files.len()], release.values_files[..]);
        assert_eq!(applied.set.last().map(|(k, _)| k.as_str()), Some("image.repository"));
        assert_eq!(applied.set_typed.last().map(|(k, v)| (k.as_str(), v.as_str())), Some(("replicaCount", "12")));
        assert!(!overrides.is_empty() && Overrides::default().is_empty());
        assert_eq!(prod.lease_name(), "shipshape-lock-model-server");
    }
}
