//! The model: a small linear classifier loaded from a JSON file or a registry URL.
//!
//! The shipped model (models/iris-v1.json) is a nearest-centroid classifier over the iris
//! measurements written in linear form: score_k = w_k . x + b_k, prediction = argmax.
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::RegistryCredentials;

#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub labels: Vec<String>,
    /// One row of weights per label, each as long as an input.
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Prediction {
    pub label: String,
    pub scores: Vec<f64>,
}

impl Model {
    pub fn from_json(text: &str) -> Result<Model> {
        let model: Model = serde_json::from_str(text).context("the model file is not valid model JSON")?;
        ensure!(!model.labels.is_empty(), "the model has no labels");
        ensure!(
            model.weights.len() == model.labels.len() && model.bias.len() == model.labels.len(),
            "the model needs one weight row and one bias per label ({} labels, {} rows, {} biases)",
            model.labels.len(),
            model.weights.len(),
            model.bias.len()
        );
        let width = model.weights[0].len();
        ensure!(width > 0 && model.weights.iter().all(|row| row.len() == width), "every weight row must have the same, non-zero length");
        Ok(model)
    }

    pub fn input_width(&self) -> usize {
        self.weights[0].len()
    }

    pub fn predict(&self, input: &[f64]) -> Result<Prediction> {
        ensure!(input.len() == self.input_width(), "each instance needs {} numbers, got {}", self.input_width(), input.len());
        let scores: Vec<f64> =
            self.weights.iter().zip(&self.bias).map(|(row, b)| row.iter().zip(input).map(|(w, x)| w * x).sum::<f64>() + b).collect();
        let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        Ok(Prediction { label: self.labels[best].clone(), scores })
    }
}

/// Loads the model named by `uri`: `file:///path`, a plain path, or an `http://` URL fetched
/// with the registry credentials (MLflow's basic auth or bearer token).
pub async fn load(uri: &str, credentials: &RegistryCredentials) -> Result<Model> {
    let text = if uri.starts_with("http://") || uri.starts_with("https://") {
        let authorization = match credentials {
            RegistryCredentials::None => None,
            RegistryCredentials::Basic { username, password } => {
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))))
            }
            RegistryCredentials::Bearer(token) => Some(format!("Bearer {token}")),
        };
        let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
        let response = crate::client::get(uri, &headers, Duration::from_secs(30)).await?;
        match response.status {
            200 => response.body,
            401 | 403 => bail!("the model registry refused the credentials ({}) for {uri}", response.status),
            other => bail!("the model registry answered {other} for {uri}"),
        }
    } else {
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        tokio::fs::read_to_string(path).await.with_context(|| format!("reading model file {path}"))?
    };
    Model::from_json(&text).with_context(|| format!("loading model from {uri}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Model {
        Model::from_json(include_str!("../models/iris-v1.json")).unwrap()
    }

    #[test]
    fn shipped_model_classifies_iris_samples() {
        let model = shipped();
        // One typical flower of each species (sepal length, sepal width, petal length, petal width).
        assert_eq!(model.predict(&[5.1, 3.5, 1.4, 0.2]).unwrap().label, "setosa");
        assert_eq!(model.predict(&[6.0, 2.9, 4.5, 1.5]).unwrap().label, "versicolor");
        assert_eq!(model.predict(&[6.9, 3.1, 5.8, 2.2]).unwrap().label, "virginica");
    }

    #[test]
    fn wrong_input_width_is_refused() {
        let err = shipped().predict(&[1.0, 2.0]).unwrap_err();
        assert!(err.to_string().contains("needs 4 numbers"));
    }

    #[test]
    fn inconsistent_models_are_refused() {
        let err = Model::from_json(r#"{"name":"m","version":"1","labels":["a","b"],"weights":[[1.0]],"bias":[0.0,0.0]}"#).unwrap_err();
        assert!(err.to_string().contains("one weight row"));
    }
}
