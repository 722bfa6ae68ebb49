//! `cargo xtask rotate-secret`: the canary runbook's secret rotation. A new value (never shown;
//! generated for the admin token, given by the operator for MLflow's password, which MLflow holds),
//! the Secret updated, every pod restarted as a Helm revision, and proof that the new value
//! works and the old one no longer does. A failed restart puts the old value back; so does a
//! failed sync of an external store's new value, before anything restarts.
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::deploy::refuse_unsafe_start_for_restart;
use super::{print_plan, reload, sealed, step, Ending, Flow, Run, Undo};
use crate::chart;
use crate::helm::Change;
use crate::k8s::external_secrets::{self, ExternalStore, RemoteRef};
use crate::k8s::{pods, secrets, wait};
use crate::kubeseal::{self, Kubeseal};
use crate::mlflow::{Credentials, ModelArtifact};

/// Which secret to rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// The token that guards POST /admin/reload (env.adminTokenSecretName).
    AdminToken,
    /// The MLflow password (env.mlflowCredentialsSecretName).
    Mlflow,
}

/// How the release's Secrets are managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMethod {
    /// shipshape writes the Secret through the API.
    Manual,
    /// kubeseal and the release's SealedSecret (a Helm revision); the controller unseals it.
    Sealed,
    /// The store behind the release's ExternalSecret; External Secrets Operator syncs it.
    External,
}

/// One rotation, as asked.
#[derive(Clone, Debug)]
pub struct Rotation {
    pub kind: SecretKind,
    pub method: SecretMethod,
    pub source: ValueSource,
    /// MLflow's password: shipshape changes it in MLflow (MLflow's auth API, as the account,
    /// with the current password from the Secret) before the Secret; otherwise the operator
    /// changed it there already.
    pub set_in_mlflow: bool,
}

impl Rotation {
    /// The usual rotation of `kind` by `method` from `source` (MLflow's password set by the
    /// operator).
    pub fn new(kind: SecretKind, method: SecretMethod, source: ValueSource) -> Rotation {
        Rotation { kind, method, source, set_in_mlflow: false }
    }
}

/// Where the new value comes from. Never the command line: a flag names the source, not the
/// value, so it is in no shell history, process list or CI log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// shipshape makes a 32-byte hex value (the admin token's default: the token is ours).
    Generate,
    /// One line on standard input (a pipe from a password manager, or typed).
    Stdin,
    /// A file's contents (a mounted secret, a file only the operator can read).
    File(std::path::PathBuf),
    /// An environment variable (a CI secret).
    Env(String),
}

impl std::str::FromStr for ValueSource {
    type Err = String;

    /// `stdin`, `file:PATH` or `env:NAME`.
    fn from_str(text: &str) -> Result<ValueSource, String> {
        match text.split_once(':') {
            None if text == "stdin" => Ok(ValueSource::Stdin),
            Some(("file", path)) if !path.is_empty() => Ok(ValueSource::File(path.into())),
            Some(("env", name)) if !name.is_empty() => Ok(ValueSource::Env(name.to_owned())),
            _ => Err(format!(
                "{text:?} is not a value source: stdin, file:PATH or env:NAME (the value itself never goes on the command line)"
            )),
        }
    }
}

impl ValueSource {
    /// The value for `kind`: where none was named, the admin token is generated, and so is
    /// MLflow's password when shipshape sets it in MLflow itself (`set_in_mlflow`); otherwise
    /// MLflow's is refused, since MLflow holds it (the runbook's first step changes it there; a
    /// value made up here would be one MLflow never had).
    pub fn for_kind(kind: SecretKind, named: Option<ValueSource>, set_in_mlflow: bool) -> Result<ValueSource> {
        match (kind, named, set_in_mlflow) {
            (SecretKind::AdminToken, _, true) => bail!("--set-in-mlflow is for the mlflow secret: the admin token is shipshape's own"),
            (_, Some(source), _) => Ok(source),
            (SecretKind::AdminToken, None, false) | (SecretKind::Mlflow, None, true) => Ok(ValueSource::Generate),
            (SecretKind::Mlflow, None, false) => bail!(
                "MLflow's password is set in MLflow first (the runbook's first step), then given here: \
                 --value-from stdin, file:PATH or env:NAME (never on the command line); or let shipshape set it \
                 in MLflow itself, as the account that owns it: --set-in-mlflow"
            ),
        }
    }

    /// The plan's words for it.
    fn in_words(&self) -> String {
        match self {
            ValueSource::Generate => "generate a new 32-byte hex value (only its length is printed)".to_owned(),
            ValueSource::Stdin => "read the new value from standard input (only its length is printed)".to_owned(),
            ValueSource::File(path) => format!("read the new value from {} (only its length is printed)", path.display()),
            ValueSource::Env(name) => format!("read the new value from ${name} (only its length is printed)"),
        }
    }

    /// The value, with one trailing line end removed (what `echo` and editors add). Refused when
    /// empty or equal to the value in force.
    pub fn take(&self, old_value: &str) -> Result<String> {
        let raw = match self {
            ValueSource::Generate => return secrets::random_token(),
            ValueSource::Stdin => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the new value from standard input")?;
                line
            }
            ValueSource::File(path) => {
                std::fs::read_to_string(path).with_context(|| format!("reading the new value from {}", path.display()))?
            }
            ValueSource::Env(name) => std::env::var(name).with_context(|| format!("reading the new value from ${name}: it is not set"))?,
        };
        let value = raw.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&raw).to_owned();
        if value.is_empty() {
            bail!("the new value is empty: nothing was changed");
        }
        if value == old_value {
            bail!("the new value is the one the Secret holds now: nothing was changed (set the new one in MLflow first)");
        }
        Ok(value)
    }
}

impl SecretKind {
    pub fn name(self) -> &'static str {
        match self {
            SecretKind::AdminToken => "admin-token",
            SecretKind::Mlflow => "mlflow",
        }
    }
}

impl SecretMethod {
    pub fn name(self) -> &'static str {
        match self {
            SecretMethod::Manual => "manual",
            SecretMethod::Sealed => "sealed",
            SecretMethod::External => "external",
        }
    }
}

pub fn rotate(flow: &Flow, rotation: &Rotation, dry_run: bool) -> Result<()> {
    let Rotation { kind, method, ref source, set_in_mlflow } = *rotation;
    let t = &flow.target;
    let state = flow.record()?;
    let Some(current) = state.current().cloned() else {
        bail!("release {} is not installed in namespace {}: there are no pods to rotate a secret for", t.release, t.namespace);
    };
    refuse_unsafe_start_for_restart(&state)?;
    let (secret, key) = match kind {
        SecretKind::AdminToken => state.values.admin_token_secret(),
        SecretKind::Mlflow => {
            let name = state.values.env.mlflow_credentials_secret_name.clone();
            if name.is_empty() {
                bail!("release {} uses no MLflow credentials (env.mlflowCredentialsSecretName is empty): nothing to rotate", t.release);
            }
            (name, state.values.env.mlflow_password_key.clone())
        }
    };
    let secrets_api: Api<Secret> = Api::namespaced(flow.client().clone(), &t.namespace);
    // Read before anything changes: a missing Secret or key stops the rotation here.
    let old_value = flow.block_on(secrets::read_key(&secrets_api, &secret, &key)).with_context(|| {
        format!("cannot rotate: create the Secret first (`cargo xtask preflight --env {}` lists what is missing)", t.env.name())
    })?;
    // Where the sealed value lives in the release's values, and what it holds now (Sealed
    // Secrets only).
    let (sealed_path, sealed_before) = sealed::path_of(&state.values, kind == SecretKind::AdminToken);
    if method == SecretMethod::Sealed {
        if !state.values.sealed_secrets.enabled {
            bail!(
                "release {} does not deliver its Secrets as SealedSecrets (sealedSecrets.enabled is false): use --method manual",
                t.release
            );
        }
        let controllers: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(flow.client().clone(), kubeseal::CONTROLLER_NAMESPACE);
        if flow.block_on(controllers.get_opt(kubeseal::CONTROLLER_NAME))?.is_none() {
            bail!(
                "no Sealed Secrets controller (Service {}/{}) in this cluster: it unseals the new value, so install it first",
                kubeseal::CONTROLLER_NAMESPACE,
                kubeseal::CONTROLLER_NAME
            );
        }
    }
    let external = match method {
        SecretMethod::External => Some(ExternalRotation::prepare(flow, &state.values, &secret, &key)?),
        _ => None,
    };
    // MLflow's password, where the release loads its model from an MLflow shipshape reaches: the
    // account's name, and the artifact MLflow must serve with the new password and refuse with
    // the old.
    let mlflow = match kind {
        SecretKind::Mlflow => MlflowAccount::of(flow, &state.values, &secret, set_in_mlflow)?,
        SecretKind::AdminToken => None,
    };
    // What serves: the stable Deployment, or the live colour's in a blue/green release (which
    // has no `model-server` Deployment). An idle colour scaled down has no pods to restart; one
    // still held after a switch restarts with the revision, unwaited (it serves nothing).
    let stable = state.values.live_deployment(&t.release);
    let deployments = super::restart::serving_deployments(&t.release, &state);

    let mut plan = vec![
        step("value", source.in_words()),
        step(
            "update",
            match method {
                SecretMethod::Manual => format!("update Secret {secret}, key {key}, through the API"),
                SecretMethod::External => {
                    let e = external.as_ref().expect("prepared for --method external");
                    format!(
                        "write the new value to {} (key {}, property {}), make External Secrets Operator sync ExternalSecret \
                         {secret} now (force-sync), and wait until Secret {secret} holds it; a failed sync stops here and \
                         puts the store's old value back",
                        e.store.describe(),
                        e.remote.key,
                        e.remote.property.as_deref().unwrap_or_default()
                    )
                }
                SecretMethod::Sealed => format!(
                    "seal the value with kubeseal (the controller's certificate, strict scope), set it as {sealed_path} \
                     (a Helm revision), and wait until the controller has unsealed it into Secret {secret}"
                ),
            },
        ),
        step("restart", format!("restart {} as a Helm revision (restartedAt; current values)", deployments.join(" and "))),
        step("rollout", format!("wait for {} to roll out", deployments.join(" and "))),
        step(
            "prove",
            match kind {
                SecretKind::AdminToken => {
                    "prove it: every pod accepts the new token and refuses the old one (POST /admin/reload)".to_owned()
                }
                SecretKind::Mlflow if mlflow.is_some() => "prove it: every pod restarted and loaded its model from MLflow with the new \
                    password (a pod is ready only then), and MLflow refuses the old one"
                    .to_owned(),
                SecretKind::Mlflow => "prove it: every pod restarted after the update and is ready with the new credentials (the model \
                    is not loaded from an MLflow shipshape reaches, so MLflow itself is not asked)"
                    .to_owned(),
            },
        ),
    ];
    // Asked of MLflow only where shipshape reaches the MLflow the release loads from.
    if let Some(account) = &mlflow {
        let check = if set_in_mlflow {
            format!(
                "check that MLflow ({}) takes the Secret's current password for user {}, then change it there as that user \
                 (MLflow's auth API; a failure later puts the old one back)",
                account.where_(),
                account.username
            )
        } else {
            format!(
                "check that MLflow ({}) takes the new password for user {} (set there first), before any change",
                account.where_(),
                account.username
            )
        };
        plan.insert(1, step("mlflow", check));
    }
    if dry_run {
        print_plan("rotate-secret", t, &plan);
        return Ok(());
    }
    let mut run = Run::begin(flow, "rotate-secret", format!("{} --method {}", kind.name(), method.name()), plan)?;
    run.fact("secret", format!("{secret}/{key}"))?;
    run.fact("from_revision", current.revision.to_string())?;
    // Whether the pods were restarted (so a failure returns to the revision before the restart).
    let restarted = std::cell::Cell::new(false);
    // The password shipshape set in MLflow (so a failure sets the old one there again).
    let set_in_mlflow_as = std::cell::RefCell::new(None::<String>);
    // The new ciphertext (--method sealed): where the next deploy must find it.
    let new_sealed_value = std::cell::RefCell::new(None::<String>);
    if method == SecretMethod::Sealed && !sealed_before.is_empty() {
        // Journaled as replaced only if the run succeeds (deploy reads succeeded runs alone).
        run.fact(sealed::REPLACED_FACT, sealed::replaced_fact(sealed_path, &sealed_before))?;
    }
    let body = (|| -> Result<Ending<()>> {
        let new_value = run.step("value", |_| {
            let value = source.take(&old_value)?;
            println!("  new value {} (length: {})", if *source == ValueSource::Generate { "generated" } else { "read" }, value.len());
            Ok(value)
        })?;
        if let Some(account) = &mlflow {
            run.step("mlflow", |changes| {
                let (checked, with) = if set_in_mlflow { ("current", &old_value) } else { ("new", &new_value) };
                let status = changes.block_on(account.artifact.status_for(changes.client(), &account.with_password(with)))?;
                if status != 200 {
                    bail!(
                        "MLflow answers {status} to user {} with the {checked} password: {}",
                        account.username,
                        if set_in_mlflow {
                            "the Secret does not hold the password MLflow has (fix that first; `cargo xtask preflight` checks it)"
                        } else {
                            "set the new password in MLflow first (or let shipshape do it: --set-in-mlflow)"
                        }
                    );
                }
                println!("  MLflow takes the {checked} password of user {}", account.username);
                if set_in_mlflow {
                    changes.about_to_change()?;
                    changes.block_on(account.artifact.server.change_password(
                        changes.client(),
                        &account.with_password(&old_value),
                        &new_value,
                    ))?;
                    set_in_mlflow_as.replace(Some(new_value.clone()));
                    println!("  password of MLflow user {} changed in MLflow", account.username);
                }
                Ok(())
            })?;
        }
        run.step("update", |changes| match method {
            SecretMethod::Manual => {
                changes.about_to_change()?;
                changes.block_on(secrets::write_key(&secrets_api, &secret, &key, &new_value))
            }
            SecretMethod::Sealed => {
                let new_sealed = Kubeseal::new(changes.sh)?.seal(&t.access(), &t.namespace, &secret, &new_value)?;
                changes.change_values(
                    sealed::values_change(sealed_path, &new_sealed),
                    &format!("shipshape rotate-secret {secret}: new sealed value"),
                )?;
                changes.block_on(secrets::until_key_is(&secrets_api, &secret, &key, &new_value, changes.rollout_timeout))?;
                new_sealed_value.replace(Some(new_sealed));
                Ok(())
            }
            SecretMethod::External => {
                let e = external.as_ref().expect("prepared for --method external");
                // Written before the Secret changes: put back even when the sync that would have
                // updated the Secret fails.
                changes.about_to_change()?;
                changes.block_on(e.store.write(&e.remote, &new_value))?;
                println!("  new value written to {}", e.store.describe());
                e.sync_until(changes, &secrets_api, &secret, &key, &new_value)
            }
        })?;
        run.step("restart", |changes| {
            restarted.set(true);
            super::restart::restart_revision(changes, &format!("shipshape rotate-secret {secret}: restart"))
        })?;
        run.step("rollout", |flow| super::restart::until_rolled_out(flow, &deployments))?;
        run.step("prove", |flow| match kind {
            SecretKind::AdminToken => flow.block_on(prove_token(&flow.pod_client, &t.namespace, &t.release, &new_value, &old_value)),
            SecretKind::Mlflow => {
                let pods = flow.block_on(pods::ready(flow.client(), &t.namespace, &t.release))?;
                println!("  {} pods restarted and ready", pods.len());
                let Some(account) = &mlflow else { return Ok(()) };
                println!("  each loaded its model from MLflow with the new password (a pod is ready only once its model is in)");
                let with_new = flow.block_on(account.artifact.status_for(flow.client(), &account.with_password(&new_value)))?;
                let with_old = flow.block_on(account.artifact.status_for(flow.client(), &account.with_password(&old_value)))?;
                println!("  MLflow: new password -> {with_new}, old password -> {with_old}");
                if with_new != 200 || with_old != 401 {
                    bail!("the rotation is not effective in MLflow: the new password got {with_new} (expected 200), the old {with_old} (expected 401)");
                }
                Ok(())
            }
        })?;
        Ok(Ending::Succeeded(()))
    })();
    let undo = Undo::with("put the old value back and return to the previous Helm revision", |changes| {
        if let (Some(new_password), Some(account)) = (set_in_mlflow_as.borrow().as_ref(), &mlflow) {
            changes.block_on(account.artifact.server.change_password(
                changes.client(),
                &account.with_password(new_password),
                &old_value,
            ))?;
            println!("  the old password is back in MLflow for user {}", account.username);
        }
        match (method, &external) {
            (SecretMethod::Manual, _) => changes.block_on(secrets::write_key(&secrets_api, &secret, &key, &old_value))?,
            (SecretMethod::External, Some(e)) => e.restore(changes, &secrets_api, &secret, &key, &old_value)?,
            _ => {}
        }
        // A sealed value is restored by the revision holding the old ciphertext.
        if restarted.get() || method == SecretMethod::Sealed {
            changes.rollback(current.revision, &Change::new(&t.access(), "shipshape rotate-secret failed: restore"))?;
            if method == SecretMethod::Sealed {
                changes.block_on(secrets::until_key_is(&secrets_api, &secret, &key, &old_value, changes.rollout_timeout))?;
            }
            changes.block_on(wait::deployment_rolled_out(changes.client(), &t.namespace, &stable, changes.rollout_timeout))?;
        }
        Ok("rotation failed; the old value is back and the pods run with it".to_owned())
    });
    run.end(body, undo)?;
    if let Some(new_sealed) = new_sealed_value.into_inner() {
        // A ciphertext only this cluster's controller unseals: safe to print and to commit.
        println!(
            "the new sealed value is in the release's Helm values only: put it in deploy/envs/{}.yaml (or the values \
             file you deploy with) and commit it; until then `deploy` refuses to put the old one back:\n{}",
            t.env.name(),
            sealed::values_block(sealed_path, &new_sealed)
        );
    }
    Ok(())
}

/// The MLflow account a release's credentials name, on the MLflow its `modelUri` names.
struct MlflowAccount {
    username: String,
    artifact: ModelArtifact,
}

impl MlflowAccount {
    /// None where the model does not come from an in-cluster MLflow (then MLflow is not asked;
    /// `--set-in-mlflow` is refused, since shipshape cannot reach the server to change it).
    fn of(flow: &Flow, values: &chart::Values, secret: &str, set_in_mlflow: bool) -> Result<Option<MlflowAccount>> {
        let Some(artifact) = ModelArtifact::from_model_uri(&values.env.model_uri) else {
            if set_in_mlflow {
                bail!(
                    "--set-in-mlflow: the release's modelUri ({}) is not a model version on an MLflow in this cluster \
                     (http://<service>.<namespace>.svc:<port>/model-versions/get-artifact?...), so shipshape cannot change \
                     the password there: change it in MLflow, then --value-from",
                    values.env.model_uri
                );
            }
            return Ok(None);
        };
        let secrets_api: Api<Secret> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
        let username = flow.block_on(secrets::read_key(&secrets_api, secret, &values.env.mlflow_username_key))?;
        Ok(Some(MlflowAccount { username, artifact }))
    }

    /// The account with `password`, as MLflow is asked with it.
    fn with_password(&self, password: &str) -> Credentials {
        Credentials { username: self.username.clone(), password: password.to_owned() }
    }

    fn where_(&self) -> String {
        let server = &self.artifact.server;
        format!("Service {}/{}:{}", server.namespace, server.service, server.port)
    }
}

/// `--method external`: where the value lives and what it was, read before anything changes.
struct ExternalRotation {
    store: ExternalStore,
    remote: RemoteRef,
    /// The store's value before the rotation (what a failure puts back).
    store_old: String,
}

impl ExternalRotation {
    /// Refuses unless the release delivers `secret` by an ExternalSecret that is synced now,
    /// from a store shipshape can write to.
    fn prepare(flow: &Flow, values: &chart::Values, secret: &str, key: &str) -> Result<ExternalRotation> {
        if !values.external_secrets.enabled {
            bail!(
                "release {} does not deliver its Secrets by External Secrets (externalSecrets.enabled is false): use --method manual or sealed",
                flow.target.release
            );
        }
        let api = external_secrets::external_secrets(flow.client(), &flow.target.namespace);
        let object = match flow.block_on(api.get_opt(secret)) {
            Ok(Some(object)) => object,
            Ok(None) => {
                bail!("no ExternalSecret {secret} in namespace {}: the chart renders one per Secret it delivers", flow.target.namespace)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                bail!("the ExternalSecret kind does not exist in this cluster: install External Secrets Operator first")
            }
            Err(err) => return Err(err).context(format!("reading ExternalSecret {secret}")),
        };
        match external_secrets::ready(&object) {
            Some(ready) if ready.status => {}
            Some(ready) => bail!("ExternalSecret {secret} does not sync now ({ready}): fix that first (`cargo xtask doctor` says more)"),
            None => bail!("ExternalSecret {secret} has not synced yet: wait for it, or see `cargo xtask doctor`"),
        }
        let remote = external_secrets::remote_ref(&object, key)?;
        let (kind, name) = external_secrets::store_ref(&object);
        let store = flow.block_on(ExternalStore::connect(flow.client(), &kind, &name, &flow.target.namespace))?;
        let store_old =
            flow.block_on(store.read(&remote)).with_context(|| format!("reading the current value from {}", store.describe()))?;
        Ok(ExternalRotation { store, remote, store_old })
    }

    /// Forces the sync, then checks that the Secret holds `value`.
    fn sync_until(&self, flow: &Flow, secrets_api: &Api<Secret>, secret: &str, key: &str, value: &str) -> Result<()> {
        flow.block_on(external_secrets::sync_now(flow.client(), &flow.target.namespace, secret, SYNC_TIMEOUT))?;
        flow.block_on(secrets::until_key_is(secrets_api, secret, key, value, SECRET_AFTER_SYNC))
    }

    /// Puts the store's old value back and syncs it. When the sync fails again (the reason the
    /// rotation failed, often), a Secret that never took the new value is as it was.
    fn restore(&self, flow: &Flow, secrets_api: &Api<Secret>, secret: &str, key: &str, old_value: &str) -> Result<()> {
        flow.block_on(self.store.write(&self.remote, &self.store_old))?;
        println!("  the old value is back in {}", self.store.describe());
        match self.sync_until(flow, secrets_api, secret, key, old_value) {
            Ok(()) => Ok(()),
            Err(sync_err) => flow
                .block_on(secrets::until_key_is(secrets_api, secret, key, old_value, SECRET_AFTER_SYNC))
                .map_err(|_| sync_err.context(format!("Secret {secret} still holds the new value"))),
        }
    }
}

/// How long the operator may take to answer a forced sync (it syncs within seconds when asked;
/// a store that does not answer is its own failure).
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long the Secret may lag the operator's report of a sync (it writes the Secret first).
const SECRET_AFTER_SYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// Every pod accepts `new` and refuses `old`.
async fn prove_token(client: &kube::Client, namespace: &str, release_name: &str, new: &str, old: &str) -> Result<()> {
    let with_new = reload::post_reload(client, namespace, release_name, new).await?;
    let with_old = reload::post_reload(client, namespace, release_name, old).await?;
    let mut wrong = Vec::new();
    for a in &with_new {
        println!("  new token: {} -> {}", a.pod, a.status);
        if a.status != 200 {
            wrong.push(format!("{} refused the new token ({})", a.pod, a.status));
        }
    }
    for a in &with_old {
        println!("  old token: {} -> {}", a.pod, a.status);
        if a.status != 401 {
            wrong.push(format!("{} answered {} to the old token (expected 401)", a.pod, a.status));
        }
    }
    if !wrong.is_empty() {
        bail!("the rotation is not effective: {}", wrong.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod value_tests {
    use super::{SecretKind, ValueSource};

    #[test]
    fn a_value_source_is_named_never_given() {
        assert_eq!("stdin".parse(), Ok(ValueSource::Stdin));
        assert_eq!("file:/run/secrets/mlflow".parse(), Ok(ValueSource::File("/run/secrets/mlflow".into())));
        assert_eq!("env:MLFLOW_NEW_PASSWORD".parse(), Ok(ValueSource::Env("MLFLOW_NEW_PASSWORD".to_owned())));
        for bad in ["hunter2", "file:", "env:", "vault:x"] {
            let error = bad.parse::<ValueSource>().unwrap_err();
            assert!(error.contains("stdin, file:PATH or env:NAME"), "{bad}: {error}");
        }
    }

    #[test]
    fn mlflows_password_is_never_invented() {
        assert_eq!(ValueSource::for_kind(SecretKind::AdminToken, None, false).unwrap(), ValueSource::Generate);
        let error = ValueSource::for_kind(SecretKind::Mlflow, None, false).unwrap_err().to_string();
        assert!(error.contains("set in MLflow first") && error.contains("--value-from") && error.contains("--set-in-mlflow"), "{error}");
        assert_eq!(ValueSource::for_kind(SecretKind::Mlflow, Some(ValueSource::Stdin), false).unwrap(), ValueSource::Stdin);
        // Set in MLflow by shipshape: a new one is made unless the operator names one.
        assert_eq!(ValueSource::for_kind(SecretKind::Mlflow, None, true).unwrap(), ValueSource::Generate);
        assert_eq!(ValueSource::for_kind(SecretKind::Mlflow, Some(ValueSource::Stdin), true).unwrap(), ValueSource::Stdin);
        let error = ValueSource::for_kind(SecretKind::AdminToken, None, true).unwrap_err().to_string();
        assert!(error.contains("for the mlflow secret"), "{error}");
    }

    #[test]
    fn a_given_value_loses_its_line_end_and_must_be_new() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-from-mlflow\r\n").unwrap();
        let source = ValueSource::File(file.clone());
        assert_eq!(source.take("old").unwrap(), "s3cret-from-mlflow");
        let error = source.take("s3cret-from-mlflow").unwrap_err().to_string();
        assert!(error.contains("the one the Secret holds now"), "{error}");
        assert!(!error.contains("s3cret"), "the value is never in an error: {error}");
        std::fs::write(&file, "\n").unwrap();
        assert!(source.take("old").unwrap_err().to_string().contains("empty"));
        assert!(ValueSource::Env("SHIPSHAPE_TEST_UNSET_VARIABLE".to_owned()).take("old").unwrap_err().to_string().contains("not set"));
        assert_eq!(ValueSource::Generate.take("old").unwrap().len(), 64);
    }
}
