//! Tier 2: rendered manifests, no cluster. Every environment x variant is rendered with the
//! pinned helm exactly as `cargo xtask render` does, linted with `helm lint --strict`, and
//! compared with its snapshot (tests/snapshots/render__<env>-<variant>.snap).
//!
//! Accept an intended change with `INSTA_UPDATE=always cargo test -p shipshape-tests`, then
//! review the snapshot diff like any other code.
use xtask::chart::{self, Env, Variant};
use xtask::helm::Helm;

/// The chart version changes on every chart release; redacted so snapshots show only what the
/// templates produce.
fn redact_chart_version(manifests: &str) -> String {
    let chart_yaml = std::fs::read_to_string(chart::chart_dir().join("Chart.yaml")).unwrap();
    let version = chart_yaml.lines().find_map(|l| l.strip_prefix("version: ")).expect("Chart.yaml has a version").trim();
    manifests.replace(&format!("model-server-{version}"), "model-server-[chart-version]")
}

/// The digest the scenarios pin the chart's appVersion to (environments that require signatures
/// render only pinned tags, as the flows deploy them).
pub const SCENARIO_DIGEST: &str = "sha256:5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

fn check(env: Env, variant: Variant) {
    let sh = xtask::repo_shell().unwrap();
    let helm = Helm::new(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    let mut release = chart::release_spec(env, variant, None);
    let app_version = chart::app_version().unwrap();
    release.set.push((format!("imageDigests.{}", app_version.replace('.', "\\.")), SCENARIO_DIGEST.to_owned()));
    let manifests = helm.template(&chart::chart_dir(), &release).unwrap_or_else(|e| panic!("{e:#}"));
    helm.lint_strict(&chart::chart_dir(), &release).unwrap_or_else(|e| panic!("{e:#}"));
    insta::assert_snapshot!(format!("{}-{}", env.name(), variant.name()), redact_chart_version(&manifests));
}

macro_rules! scenarios {
    ($($test:ident: $env:ident $variant:ident;)*) => {
        $( #[test] fn $test() { check(Env::$env, Variant::$variant) } )*

        /// Every snapshot on disk belongs to a scenario above: a removed scenario cannot leave
        /// a stale snapshot behind (what `--unreferenced=reject` does for cargo-insta).
        #[test]
        fn no_snapshot_without_a_scenario() {
            let expected: Vec<String> = vec![$(format!("render__{}-{}.snap", Env::$env.name(), Variant::$variant.name())),*];
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.starts_with("render__") {
                    assert!(expected.contains(&name), "{name} matches no scenario in tests/render.rs: delete it");
                }
            }
        }

        #[test]
        fn scenarios_cover_every_env_and_variant() {
            let covered = [$((Env::$env, Variant::$variant)),*];
            for env in Env::ALL {
                for variant in Variant::ALL {
                    assert!(covered.contains(&(env, variant)), "no scenario for {env:?} x {variant:?}");
                }
            }
        }
    };
}

scenarios! {
    dev_stable: Dev Stable;
    dev_canary: Dev Canary;
    dev_blue: Dev Blue;
    dev_green: Dev Green;
    dev_external_secrets: Dev ExternalSecrets;
    dev_sealed_secrets: Dev SealedSecrets;
    staging_stable: Staging Stable;
    staging_canary: Staging Canary;
    staging_blue: Staging Blue;
    staging_green: Staging Green;
    staging_external_secrets: Staging ExternalSecrets;
    staging_sealed_secrets: Staging SealedSecrets;
    prod_stable: Prod Stable;
    prod_canary: Prod Canary;
    prod_blue: Prod Blue;
    prod_green: Prod Green;
    prod_external_secrets: Prod ExternalSecrets;
    prod_sealed_secrets: Prod SealedSecrets;
}
