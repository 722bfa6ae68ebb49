//! Prometheus metrics, served on their own port (9090) so scraping never competes with traffic.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern (`/v1/predict`), never the raw path: bounded cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub model: Family<ModelLabels, Gauge>,
    pub reloads: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new(app_version: &str) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served, by route and status", requests.clone());
        // 1 ms .. ~8 s: covers health checks and slow predictions alike.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14)));
        registry.register("http_request_duration_seconds", "HTTP request latency, by route", latency.clone());
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: app_version.to_owned() }).set(1);
        registry.register("model_server_build_info", "The deployed model-server version (always 1)", build);
        let model = Family::<ModelLabels, Gauge>::default();
        registry.register("model_server_model_info", "The loaded model's name and version (always 1)", model.clone());
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register("model_server_model_reloads", "Model reloads, by result", reloads.clone());
        Metrics { registry, requests, latency, model, reloads }
    }

    pub fn model_loaded(&self, name: &str, version: &str) {
        self.model.clear();
        self.model.get_or_create(&ModelLabels { name: name.to_owned(), version: version.to_owned() }).set(1);
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&OutcomeLabels { result: result.to_owned() }).inc();
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes natively.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
