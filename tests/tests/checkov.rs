//! Tier 2: a judge no one here wrote. checkov (Prisma Cloud's Kubernetes policy scanner, pinned,
//! installed by `cargo xtask tools install`) reads every environment x variant as the pinned
//! helm renders it, in its environment's namespace as a release is installed. No check may fail;
//! what is left so on purpose is suppressed in the chart, next to what it judges, with the
//! reason (`checkov.io/skipN` annotations), and this test holds every suppression to a reason.
use xtask::chart::{self, Env, Variant};
use xtask::helm::Helm;

#[test]
fn checkov_passes_every_environments_rendered_manifests() {
    let sh = xtask::repo_shell().unwrap();
    let helm = Helm::new(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    // Not tempfile's default `.tmpXXXX`: checkov skips hidden directories, and found nothing.
    let dir = tempfile::Builder::new().prefix("checkov-renders-").tempdir().unwrap();
    let digest = format!("sha256:{}", "5ca1ab1e".repeat(8));
    for env in Env::ALL {
        for variant in Variant::ALL {
            let mut release = chart::release_spec(env, variant, None);
            release.set.push((format!("imageDigests.{}", chart::app_version().unwrap().replace('.', "\\.")), digest.clone()));
            let manifests = helm.template(&chart::chart_dir(), &release).unwrap_or_else(|e| panic!("{env:?} {variant:?}: {e:#}"));
            std::fs::write(dir.path().join(format!("{}-{}.yaml", env.name(), variant.name())), manifests).unwrap();
        }
    }

    let checkov = xtask::tools::CHECKOV.command(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    let rendered = dir.path();
    // --skip-download: offline, no platform account; exit status 1 means failed checks, read below.
    let out = checkov
        .args(["-d"])
        .arg(rendered)
        .args(["--framework", "kubernetes", "--skip-download", "-o", "json"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .ignore_status()
        .quiet()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("checkov printed no JSON report ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let reports = match report {
        serde_json::Value::Array(reports) => reports,
        one => vec![one],
    };

    let mut failed = Vec::new();
    let (mut passed, mut skipped, mut resources) = (0, 0, 0);
    for report in &reports {
        let results = &report["results"];
        for check in results["failed_checks"].as_array().into_iter().flatten() {
            failed.push(format!("{} {} on {} ({})", check["check_id"], check["check_name"], check["resource"], check["file_path"]));
        }
        for check in results["skipped_checks"].as_array().into_iter().flatten() {
            let reason = check["check_result"]["suppress_comment"].as_str().unwrap_or_default();
            assert!(reason.len() > 20, "{} is suppressed on {} without a reason: {check}", check["check_id"], check["resource"]);
            skipped += 1;
        }
        passed += report["summary"]["passed"].as_u64().unwrap_or(0);
        resources += report["summary"]["resource_count"].as_u64().unwrap_or(0);
    }
    assert!(failed.is_empty(), "checkov finds {} problem(s) in the rendered chart:\n{}", failed.len(), failed.join("\n"));
    // It read them all: 18 renders of at least a Deployment, a Service, a ServiceAccount and the
    // test pod each.
    assert!(resources >= 18 * 4 && passed > 1000, "checkov read too little: {resources} resources, {passed} checks passed");
    assert!(skipped > 0, "the chart's suppressions were read");
}
