//! MLflow's tracking server as shipshape meets it: the model registry a release loads its model
//! from (its `modelUri` names a model version's artifact on an in-cluster MLflow), guarded by
//! MLflow's basic-auth app, whose users and passwords live in MLflow and are changed through its
//! REST API. Reached by port-forward: the API server's proxy strips the Authorization header.
use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::k8s::port_forward::{self, Request};

/// A user of MLflow's basic-auth app. The password is never printed: `Debug` leaves it out.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<not shown>").finish()
    }
}

impl Credentials {
    /// The account in Secret `secret` (its keys `username_key` and `password_key`).
    pub async fn from_secret(
        api: &kube::Api<k8s_openapi::api::core::v1::Secret>,
        secret: &str,
        username_key: &str,
        password_key: &str,
    ) -> Result<Credentials> {
        Ok(Credentials {
            username: crate::k8s::secrets::read_key(api, secret, username_key).await?,
            password: crate::k8s::secrets::read_key(api, secret, password_key).await?,
        })
    }

    fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// An MLflow tracking server behind a Service of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// A model version's artifact, as model-server fetches it from MLflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelArtifact {
    pub server: Server,
    /// `/model-versions/get-artifact?path=...&name=...&version=...`
    pub path_and_query: String,
}

/// MLflow's route for one file of a registered model's version (the one its UI downloads by).
const MODEL_VERSION_ARTIFACT_ROUTE: &str = "/model-versions/get-artifact";

impl ModelArtifact {
    /// The MLflow artifact a `modelUri` names: `http://<service>.<namespace>.svc[.cluster.local][:port]
    /// /model-versions/get-artifact?...`. None for a file or any other URL (not MLflow's, or not
    /// in the cluster, where shipshape cannot reach it to prove a password).
    pub fn from_model_uri(uri: &str) -> Option<ModelArtifact> {
        let rest = uri.strip_prefix("http://")?;
        let (authority, path_and_query) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}")))?;
        if !path_and_query.starts_with(MODEL_VERSION_ARTIFACT_ROUTE) {
            return None;
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 80),
        };
        let host = host.strip_suffix(".cluster.local").unwrap_or(host);
        let mut labels = host.strip_suffix(".svc")?.split('.');
        let (service, namespace) = (labels.next()?, labels.next()?);
        if labels.next().is_some() {
            return None;
        }
        Some(ModelArtifact { server: Server { namespace: namespace.to_owned(), service: service.to_owned(), port }, path_and_query })
    }

    /// The HTTP status MLflow answers `user` for the artifact: 200 (the password works), 401 (it
    /// does not).
    pub async fn status_for(&self, client: &kube::Client, user: &Credentials) -> Result<u16> {
        let request = Request::get(&self.path_and_query).header("authorization", user.authorization());
        Ok(self.server.send(client, &request).await?.status)
    }
}

impl Server {
    async fn send(&self, client: &kube::Client, request: &Request<'_>) -> Result<port_forward::Answer> {
        port_forward::send(client, &self.namespace, &self.service, self.port, request).await
    }

    /// A REST call as `user`; anything but 200 is an error with MLflow's own message.
    async fn call(
        &self,
        client: &kube::Client,
        user: &Credentials,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let request = Request::json(method, path, &body).header("authorization", user.authorization());
        let answer = self.send(client, &request).await?;
        if answer.status != 200 {
            bail!("MLflow answered {} to {method} {path}: {}", answer.status, mlflow_message(&answer.body));
        }
        Ok(serde_json::from_str(&answer.body).unwrap_or(serde_json::Value::Null))
    }

    /// Makes `user` an MLflow account with its password, as MLflow's admin does for a team:
    /// created, or its password set if MLflow has the account. Returns whether it was created.
    pub async fn set_user(&self, client: &kube::Client, admin: &Credentials, user: &Credentials) -> Result<bool> {
        let path = format!("/api/2.0/mlflow/users/get?username={}", user.username);
        let request = Request::get(&path).header("authorization", admin.authorization());
        let body = serde_json::json!({"username": user.username, "password": user.password});
        if self.send(client, &request).await?.status == 200 {
            self.call(client, admin, "PATCH", "/api/2.0/mlflow/users/update-password", body)
                .await
                .with_context(|| format!("setting MLflow user {}'s password", user.username))?;
            return Ok(false);
        }
        self.call(client, admin, "POST", "/api/2.0/mlflow/users/create", body)
            .await
            .with_context(|| format!("creating MLflow user {}", user.username))?;
        Ok(true)
    }

    /// Changes `user`'s password as the user itself (MLflow asks for the current one: the
    /// runbook's "update the password in the MLflow server", by the account that owns it).
    pub async fn change_password(&self, client: &kube::Client, user: &Credentials, new_password: &str) -> Result<()> {
        let body = serde_json::json!({"username": user.username, "password": new_password, "current_password": user.password});
        self.call(client, user, "PATCH", "/api/2.0/mlflow/users/update-password", body)
            .await
            .with_context(|| format!("changing MLflow user {}'s password in MLflow", user.username))?;
        Ok(())
    }

    /// The newest version of registered model `name`, if MLflow has the model and a version of it.
    pub async fn latest_version(&self, client: &kube::Client, admin: &Credentials, name: &str) -> Result<Option<String>> {
        let path = format!("/api/2.0/mlflow/registered-models/get?name={name}");
        let request = Request::get(&path).header("authorization", admin.authorization());
        let answer = self.send(client, &request).await?;
        match answer.status {
            200 => {
                let model: serde_json::Value = serde_json::from_str(&answer.body).context("MLflow's answer about a registered model")?;
                let versions = model["registered_model"]["latest_versions"].as_array().cloned().unwrap_or_default();
                Ok(versions.iter().filter_map(|v| v["version"].as_str()?.parse::<u64>().ok()).max().map(|v| v.to_string()))
            }
            404 => Ok(None),
            other => bail!("MLflow answered {other} about registered model {name}: {}", mlflow_message(&answer.body)),
        }
    }

    /// Registers `model_json` as a new version of registered model `name` (created if absent):
    /// an experiment and a run hold the artifact, uploaded through MLflow's artifact proxy.
    /// Returns the version MLflow gave it.
    pub async fn register_model(&self, client: &kube::Client, admin: &Credentials, name: &str, model_json: &[u8]) -> Result<String> {
        let experiment = match self
            .call(client, admin, "GET", &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"), serde_json::json!({}))
            .await
        {
            Ok(found) => found["experiment"]["experiment_id"].as_str().unwrap_or_default().to_owned(),
            Err(_) => self.call(client, admin, "POST", "/api/2.0/mlflow/experiments/create", serde_json::json!({"name": name})).await?
                ["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let run = self.call(client, admin, "POST", "/api/2.0/mlflow/runs/create", serde_json::json!({"experiment_id": experiment})).await?;
        let run_id = run["run"]["info"]["run_id"].as_str().context("MLflow created a run without an id")?.to_owned();
        let upload = Request {
            method: "PUT",
            path: &format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/model/model.json"),
            headers: vec![("authorization", admin.authorization())],
            body: model_json.to_vec(),
        };
        let answer = self.send(client, &upload).await?;
        if answer.status != 200 {
            bail!("MLflow answered {} to the model's upload: {}", answer.status, mlflow_message(&answer.body));
        }
        self.call(client, admin, "POST", "/api/2.0/mlflow/runs/update", serde_json::json!({"run_id": run_id, "status": "FINISHED"}))
            .await?;
        let exists = self
            .call(client, admin, "GET", &format!("/api/2.0/mlflow/registered-models/get?name={name}"), serde_json::json!({}))
            .await
            .is_ok();
        if !exists {
            self.call(client, admin, "POST", "/api/2.0/mlflow/registered-models/create", serde_json::json!({"name": name})).await?;
        }
        let source = format!("mlflow-artifacts:/{experiment}/{run_id}/artifacts/model");
        let version = self
            .call(
                client,
                admin,
                "POST",
                "/api/2.0/mlflow/model-versions/create",
                serde_json::json!({"name": name, "source": source, "run_id": run_id}),
            )
            .await?;
        Ok(version["model_version"]["version"].as_str().context("MLflow created a model version without a number")?.to_owned())
    }
}

/// MLflow's error message from its JSON answer, or the answer's first line.
fn mlflow_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.lines().next().unwrap_or_default().chars().take(200).collect())
}

/// The `modelUri` of version `version` of registered model `name` on `server`, as model-server
/// fetches it.
pub fn model_uri(server: &Server, name: &str, version: &str) -> String {
    format!(
        "http://{}.{}.svc:{}{MODEL_VERSION_ARTIFACT_ROUTE}?path=model.json&name={name}&version={version}",
        server.service, server.namespace, server.port
    )
}

#[cfg(test)]
mod tests {
    use super::{ModelArtifact, Server};

    #[test]
    fn an_mlflow_model_uri_names_its_service_and_the_artifact_and_other_uris_name_none() {
        let server = Server { namespace: "mlflow".to_owned(), service: "mlflow".to_owned(), port: 5000 };
        let uri = super::model_uri(&server, "iris", "1");
        assert_eq!(uri, "http://mlflow.mlflow.svc:5000/model-versions/get-artifact?path=model.json&name=iris&version=1");
        let artifact = ModelArtifact::from_model_uri(&uri).unwrap();
        assert_eq!(artifact.server, server);
        assert_eq!(artifact.path_and_query, "/model-versions/get-artifact?path=model.json&name=iris&version=1");
        let long =
            ModelArtifact::from_model_uri("http://registry.ml.svc.cluster.local/model-versions/get-artifact?path=m.json&name=a&version=2")
                .unwrap();
        assert_eq!((long.server.service.as_str(), long.server.namespace.as_str(), long.server.port), ("registry", "ml", 80));
        for other in [
            "/models/model.json",
            "file:///models/model.json",
            "http://mlflow.example.com/model-versions/get-artifact?path=model.json",
            "http://mlflow.mlflow.svc:5000/models/model.json",
            "https://mlflow.mlflow.svc/model-versions/get-artifact?path=model.json",
        ] {
            assert_eq!(ModelArtifact::from_model_uri(other), None, "{other}");
        }
    }

    #[test]
    fn a_password_is_never_in_debug_output() {
        let user = super::Credentials { username: "model-server".to_owned(), password: "s3cret".to_owned() };
        let shown = format!("{user:?}");
        assert!(shown.contains("model-server") && !shown.contains("s3cret"), "{shown}");
    }
}
