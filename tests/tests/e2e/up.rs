//! The main job, `cargo xtask up`, minus the cluster it shares: the chart installed with the
//! local images, a real PostgreSQL, and the health endpoints answered through the API server.
use crate::fixture;

#[test]
fn up_deploys_model_server_and_it_answers_through_the_api_server() {
    let shared = fixture::shared();
    let sh = xtask::repo_shell().unwrap();
    let verified = xtask::up::deploy_dev(&sh, &shared.cluster.cluster).unwrap_or_else(|e| panic!("{e:#}"));
    let answer = |path: &str| verified.checks.iter().find(|(p, _, _)| p == path).cloned().unwrap_or_else(|| panic!("{path} not checked"));
    assert_eq!(answer("/health").1, 200);
    assert!(answer("/health").2.contains(r#""status":"healthy""#));
    assert!(answer("/ready").2.contains(r#""status":"ready""#), "{:?}", answer("/ready"));
    assert_eq!(answer("/health/db").2, r#"{"status":"connected"}"#, "the real PostgreSQL must answer");
    let tag = xtask::image::tag_of(&verified.image);
    assert!(answer("/version").2.contains(&tag), "the deployed version is the built image's tag: {:?}", answer("/version"));
    assert!(
        verified.image.starts_with("localhost:5001/") && verified.image.contains("@sha256:"),
        "through the registry, by digest: {}",
        verified.image
    );
}
