//! Canary analysis from an in-cluster Prometheus: the same track samples as from the pods, by
//! PromQL over the window, and the values of custom checks.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{TrackSample, ROUTE};
use crate::chart;
use crate::k8s::proxy;

/// A Prometheus server in the cluster, named by its Service URL
/// (`http://<service>.<namespace>.svc[.cluster.local]:<port>`), reached through the API server's
/// service proxy like every other in-cluster endpoint shipshape talks to.
#[derive(Clone, Debug, PartialEq)]
pub struct Prometheus {
    pub namespace: String,
    pub service: String,
    pub port: String,
}

impl std::str::FromStr for Prometheus {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> Result<Prometheus> {
        let explain = || {
            anyhow::anyhow!(
                "{url:?} is not an in-cluster Prometheus Service URL: give http://<service>.<namespace>.svc:<port> \
                 (shipshape reaches it through the API server, with no port-forward)"
            )
        };
        let rest = url.strip_prefix("http://").ok_or_else(explain)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = authority.split_once(':').unwrap_or((authority, "9090"));
        let host = host.strip_suffix(".cluster.local").unwrap_or(host);
        let mut labels = host.strip_suffix(".svc").ok_or_else(explain)?.split('.');
        let (Some(service), Some(namespace), None) = (labels.next(), labels.next(), labels.next()) else { return Err(explain()) };
        Ok(Prometheus { namespace: namespace.to_owned(), service: service.to_owned(), port: port.to_owned() })
    }
}

impl std::fmt::Display for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}.{}.svc:{}", self.service, self.namespace, self.port)
    }
}

impl Prometheus {
    /// The window's traffic per track, from Prometheus: `increase(...[window])` of the same
    /// counters the pods expose, for the stable and canary Deployments' pods (by name).
    pub async fn window(
        &self,
        client: &kube::Client,
        namespace: &str,
        release_name: &str,
        window: Duration,
    ) -> Result<BTreeMap<String, TrackSample>> {
        let mut result = BTreeMap::new();
        for (track, pods) in track_pods(release_name) {
            let selector = format!(r#"namespace="{namespace}",pod=~"{pods}",route="{ROUTE}""#);
            let range = format!("{}s", window.as_secs().max(1));
            let query = |metric: &str, extra: &str| format!("sum(increase({metric}{{{selector}{extra}}}[{range}]))");
            let buckets = format!("sum by (le) (increase(http_request_duration_seconds_bucket{{{selector}}}[{range}]))");
            let sample = TrackSample {
                requests: self.scalar(client, &query("http_requests_total", "")).await?,
                errors: self.scalar(client, &query("http_requests_total", r#",status=~"5..""#)).await?,
                latency_sum: self.scalar(client, &query("http_request_duration_seconds_sum", "")).await?,
                latency_count: self.scalar(client, &query("http_request_duration_seconds_count", "")).await?,
                // The buckets themselves, not `histogram_quantile`: the percentile is computed
                // by the same code for both sources (`TrackSample::latency_quantile`).
                latency_buckets: parse_buckets_by_le(&self.query(client, &buckets).await?)
                    .with_context(|| format!("reading Prometheus's answer to {buckets}"))?,
            };
            result.insert(track.to_owned(), sample);
        }
        Ok(result)
    }

    /// A custom check's value: None when the query returns no series or not a number (0/0).
    pub async fn value(&self, client: &kube::Client, query: &str) -> Result<Option<f64>> {
        let body = self.query(client, query).await?;
        let value = parse_instant_value_opt(&body).with_context(|| format!("reading Prometheus's answer to {query}"))?;
        Ok(value.filter(|v| v.is_finite()))
    }

    async fn scalar(&self, client: &kube::Client, query: &str) -> Result<f64> {
        parse_instant_value(&self.query(client, query).await?).with_context(|| format!("reading Prometheus's answer to {query}"))
    }

    /// An instant query's answer (JSON), through the API server's service proxy.
    async fn query(&self, client: &kube::Client, query: &str) -> Result<String> {
        self.query_at(client, query, None).await
    }

    /// An instant query's answer evaluated at `at` (Unix seconds; None: now).
    pub async fn query_at(&self, client: &kube::Client, query: &str, at: Option<f64>) -> Result<String> {
        let time = at.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        let path = format!("/api/v1/query?query={}{time}", percent_encode(query));
        let answer = proxy::get(client, &self.namespace, &self.service, &self.port, &path).await?;
        anyhow::ensure!(answer.status == 200, "Prometheus {self} answered {} to {query}: {}", answer.status, answer.in_words());
        Ok(answer.body)
    }
}

/// A `sum by (le) (...)` instant vector as cumulative buckets, ascending by bound (+Inf last).
pub fn parse_buckets_by_le(body: &str) -> Result<Vec<(f64, f64)>> {
    let answer: serde_json::Value = serde_json::from_str(body)?;
    anyhow::ensure!(answer["status"] == "success", "query failed: {}", answer["error"]);
    let mut buckets = Vec::new();
    for series in answer["data"]["result"].as_array().into_iter().flatten() {
        let le = series["metric"]["le"].as_str().context("a series without its `le` label")?;
        let upper = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().with_context(|| format!("le={le:?}"))? };
        let count = series["value"][1].as_str().context("no value in the result")?.parse::<f64>()?;
        buckets.push((upper, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(buckets)
}

/// The value of an instant query's single-series vector result (0 when it has no series: no
/// traffic was recorded).
pub fn parse_instant_value(body: &str) -> Result<f64> {
    Ok(parse_instant_value_opt(body)?.unwrap_or(0.0))
}

/// The value of an instant query's first series (a vector) or of a scalar result; None
/// without a series.
fn parse_instant_value_opt(body: &str) -> Result<Option<f64>> {
    let answer: serde_json::Value = serde_json::from_str(body)?;
    anyhow::ensure!(answer["status"] == "success", "query failed: {}", answer["error"]);
    let result = &answer["data"]["result"];
    let value = match answer["data"]["resultType"].as_str() {
        Some("scalar") => &result[1],
        _ => match result.as_array().and_then(|r| r.first()) {
            Some(first) => &first["value"][1],
            None => return Ok(None),
        },
    };
    // Prometheus writes NaN and infinities as strings too.
    let value = value.as_str().context("no value in the result")?;
    value.parse::<f64>().map(Some).context("the value is not a number")
}

/// Each track's pods by name, as PromQL regular expressions: the stable and canary
/// Deployments' ReplicaSet pods (`<fullname>-<hash>-<id>`, `<fullname>-canary-<hash>-<id>`).
pub fn track_pods(release_name: &str) -> [(&'static str, String); 2] {
    let full = chart::fullname(release_name);
    [("stable", format!("{full}-[a-z0-9]+-[a-z0-9]+")), ("canary", format!("{full}-canary-[a-z0-9]+-[a-z0-9]+"))]
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_is_named_by_its_in_cluster_service_url() {
        let parsed: Prometheus = "http://prometheus-server.monitoring.svc.cluster.local:80".parse().unwrap();
        assert_eq!(parsed, Prometheus { namespace: "monitoring".into(), service: "prometheus-server".into(), port: "80".into() });
        let default_port: Prometheus = "http://prometheus.monitoring.svc".parse().unwrap();
        assert_eq!(default_port.port, "9090");
        let error = "http://localhost:9090".parse::<Prometheus>().unwrap_err().to_string();
        assert!(error.contains("http://<service>.<namespace>.svc:<port>"), "{error}");
    }

    #[test]
    fn instant_query_answers_are_read() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"42.5"]}]}}"#;
        assert_eq!(parse_instant_value(one).unwrap(), 42.5);
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_instant_value(none).unwrap(), 0.0);
        assert_eq!(parse_instant_value_opt(none).unwrap(), None, "no series is no data, for a custom check");
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"NaN"]}}"#;
        assert!(parse_instant_value_opt(scalar).unwrap().unwrap().is_nan());
        let failed = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(parse_instant_value(failed).is_err());
        assert_eq!(percent_encode(r#"sum(x{a="b"})"#), "sum%28x%7Ba%3D%22b%22%7D%29");
    }
}
