//! The vulnerability gate before a release is signed: the canary runbook's Trivy step. The
//! pinned Trivy scans the image's archive (`docker save`): the crates cargo-auditable embeds in
//! model-server's binary, and the Debian packages of the system libraries copied beside it
//! (recorded in `/var/lib/dpkg/status.d`, as distroless images record theirs). HIGH, CRITICAL
//! and UNKNOWN findings (no severity: nobody has judged the advisory yet, and unknown is not
//! low) refuse the release, Trivy's own exit code deciding, unless ignored in
//! [`ALLOW_LIST`], each entry with a statement and an expiry. The same scan gives the image's
//! SBOM (CycloneDX), which `release` attaches as a signed attestation, and the scan itself is
//! attested with its database's digest and date.
//!
//! Every Trivy call is here.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::tools::TRIVY;

/// The allow-list, in Trivy's own YAML ignore format (`vulnerabilities:` entries with `id`,
/// `statement` and `expired_at`); shipshape requires all three on every entry. An expired entry
/// no longer ignores anything (Trivy's behaviour): the finding blocks again.
pub const ALLOW_LIST: &str = "deploy/scan/.trivyignore.yaml";
/// The severities that refuse a release: `--severity` of the gate's run.
pub const BLOCKING: &str = "HIGH,CRITICAL,UNKNOWN";
/// Trivy's exit code for "findings at the blocking severities" (`--exit-code`): not 1, which is
/// also its exit code for a fatal error.
const FOUND: i32 = 10;
/// The database inside Trivy's cache directory (`--cache-dir`), and its metadata.
const DB_FILE: &str = "db/trivy.db";
const METADATA_FILE: &str = "db/metadata.json";
/// The database schema Trivy v0.74 reads.
const SCHEMA_VERSION: u64 = 2;

/// One vulnerability Trivy reported for a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub id: String,
    pub package: String,
    pub version: String,
    /// Trivy's: CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN.
    pub severity: String,
    /// The Debian source package, for a system library (libc6's is glibc).
    pub source_package: Option<String>,
}

impl Finding {
    /// HIGH and CRITICAL block, and so does UNKNOWN.
    pub fn blocks(&self) -> bool {
        BLOCKING.split(',').any(|s| s == self.severity)
    }

    fn is_system_library(&self) -> bool {
        self.source_package.is_some()
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let package = match &self.source_package {
            Some(source) if *source != self.package => format!("{} (system library, Debian source {source})", self.package),
            Some(_) => format!("{} (system library)", self.package),
            None => self.package.clone(),
        };
        let severity = match self.severity.as_str() {
            "UNKNOWN" => "severity unknown (no severity: blocks until judged)",
            other => other,
        };
        write!(f, "{} {package} {}: {severity}", self.id, self.version)
    }
}

/// The vulnerability database a scan reads, and how old it may be.
#[derive(Clone, Debug)]
pub struct Database {
    /// Trivy's cache directory (`--cache-dir`): holds `db/trivy.db` and `db/metadata.json`.
    pub dir: PathBuf,
    /// Refused when it was built longer ago than this many days.
    pub max_age_days: u32,
}

/// How old a database may be unless told otherwise: one older misses what was published since
/// (Grype refuses one older than 5 days by default; Trivy's is rebuilt every 6 hours).
pub const MAX_AGE_DAYS: u32 = 7;

const FETCH_HINT: &str = "e.g. one made on a connected machine with `trivy image --download-db-only --cache-dir DIR` \
                          (Trivy v0.74: database schema 2, from mirror.gcr.io/aquasec/trivy-db:2), then copied here";

/// The database in `database.dir` is Trivy's (schema 2) and was built within `max_age_days` of
/// `now`. Returns when it was built.
pub fn check_database(database: &Database, now: Timestamp) -> Result<Timestamp> {
    let path = &database.dir;
    let metadata = path.join(METADATA_FILE);
    if !path.join(DB_FILE).is_file() || !metadata.is_file() {
        bail!(
            "{} holds no Trivy vulnerability database ({DB_FILE} and {METADATA_FILE}): give --vuln-db (or SHIPSHAPE_VULN_DB) \
             Trivy's cache directory, {FETCH_HINT}",
            path.display()
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Metadata {
        version: u64,
        updated_at: Timestamp,
    }
    let text = std::fs::read_to_string(&metadata).with_context(|| format!("reading {}", metadata.display()))?;
    let read: Metadata = serde_json::from_str(&text).with_context(|| format!("{} is not Trivy's database metadata", metadata.display()))?;
    if read.version != SCHEMA_VERSION {
        bail!(
            "{} is Trivy database schema {}; Trivy {} reads schema {SCHEMA_VERSION}: {FETCH_HINT}",
            path.display(),
            read.version,
            TRIVY.version
        );
    }
    let age_days = now.duration_since(read.updated_at).as_secs() / 86_400;
    if age_days > i64::from(database.max_age_days) {
        bail!(
            "the vulnerability database in {} is {age_days} days old (built {}): a stale database passes what was published \
             since. Fetch a fresh one, {FETCH_HINT}; or, knowingly, allow an older one with --max-vuln-db-age DAYS (now {})",
            path.display(),
            read.updated_at,
            database.max_age_days
        );
    }
    Ok(read.updated_at)
}

/// Every entry of the allow-list has an id, a statement (why it is acceptable) and an expiry
/// (`expired_at`). Returns how many entries it has.
pub fn check_allow_list(text: &str) -> Result<usize> {
    // Trivy's format: a top-level `vulnerabilities:` list of mappings, one `- id:` each; an
    // entry's own lists (`paths:`, `purls:`) are deeper, and other sections (`secrets:`) are
    // not this gate's.
    let mut entries: Vec<Vec<&str>> = Vec::new();
    let (mut in_vulnerabilities, mut item_indent) = (false, None::<usize>);
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
        let item = line.trim_start();
        let indent = line.len() - item.len();
        if indent == 0 && !item.starts_with("- ") {
            in_vulnerabilities = item.starts_with("vulnerabilities:");
            item_indent = None;
            continue;
        }
        if !in_vulnerabilities {
            continue;
        }
        match item.strip_prefix("- ") {
            Some(first) if item_indent.is_none_or(|i| i == indent) => {
                item_indent = Some(indent);
                entries.push(vec![first.trim_start()]);
            }
            _ => entries.last_mut().into_iter().for_each(|entry| entry.push(item)),
        }
    }
    for (n, entry) in entries.iter().enumerate() {
        let has = |key: &str| entry.iter().any(|l| l.strip_prefix(key).is_some_and(|rest| rest.starts_with(':') && rest[1..].trim() != ""));
        let missing: Vec<&str> = ["id", "statement", "expired_at"].into_iter().filter(|k| !has(k)).collect();
        if !missing.is_empty() {
            bail!(
                "{ALLOW_LIST}: entry {} has no {}: every allowed finding needs an id, a statement (why) and an expiry (expired_at)",
                n + 1,
                missing.join(", ")
            );
        }
    }
    Ok(entries.len())
}

/// The findings of a Trivy JSON report (allow-listed ones already left out by Trivy).
pub fn findings(report: &Value) -> Vec<Finding> {
    let mut found = Vec::new();
    for result in report["Results"].as_array().into_iter().flatten() {
        let system = result["Class"] == "os-pkgs";
        let packages = result["Packages"].as_array();
        for vulnerability in result["Vulnerabilities"].as_array().into_iter().flatten() {
            let text = |key: &str| vulnerability[key].as_str().unwrap_or_default().to_owned();
            let source_package = system.then(|| {
                packages
                    .into_iter()
                    .flatten()
                    .find(|p| p["ID"] == vulnerability["PkgID"])
                    .and_then(|p| p["SrcName"].as_str())
                    .unwrap_or(vulnerability["PkgName"].as_str().unwrap_or_default())
                    .to_owned()
            });
            found.push(Finding {
                id: text("VulnerabilityID"),
                package: text("PkgName"),
                version: text("InstalledVersion"),
                severity: text("Severity"),
                source_package,
            });
        }
    }
    found
}

/// The operating system Trivy found the image's packages for ("debian 12.11"), if any.
fn operating_system(report: &Value) -> Option<String> {
    let os = &report["Metadata"]["OS"];
    let family = os["Family"].as_str().filter(|f| !f.is_empty() && *f != "none")?;
    Some(format!("{family} {}", os["Name"].as_str().unwrap_or_default()).trim().to_owned())
}

/// The scan of one image archive (`docker save`): every finding, those that block, the
/// CycloneDX SBOM, and what `release` attests of the scan (cosign's vuln predicate: the scanner,
/// the database's digest and date, the findings, when).
pub struct Scanned {
    pub findings: Vec<Finding>,
    pub blocking: Vec<Finding>,
    pub sbom: Value,
    pub attestation: Value,
}

/// Scans `archive` against `database`, with the allow-list.
pub fn scan(sh: &Shell, archive: &Path, database: &Database) -> Result<Scanned> {
    let started = Timestamp::now();
    let built = check_database(database, started)?;
    let allow_list = crate::repo_root().join(ALLOW_LIST);
    let allowed = check_allow_list(&std::fs::read_to_string(&allow_list).with_context(|| format!("reading {ALLOW_LIST}"))?)?;
    let bin = TRIVY.find(sh)?;
    let cache = &database.dir;
    // Offline and read-only: the database as given (never updated during a scan), no request
    // to any registry or API, nothing written to the cache directory (a CI artifact may be
    // read-only), no version check or telemetry.
    let offline = [
        "--skip-db-update",
        "--skip-java-db-update",
        "--offline-scan",
        "--cache-backend",
        "memory",
        "--skip-version-check",
        "--disable-telemetry",
        "--no-progress",
        "--quiet",
        "--scanners",
        "vuln",
    ];
    // Exit 0: nothing at the asked severities; FOUND (the gate's `--exit-code`): findings.
    // Anything else, 1 included, is Trivy failing (its fatal errors exit 1, so 1 cannot mean
    // "found": a scan that never ran would read as a finding, or worse, the other way round).
    let run = |args: &[&str]| -> Result<(Value, bool)> {
        let out = cmd!(sh, "{bin} image --input {archive} --cache-dir {cache} {offline...} --ignorefile {allow_list} {args...}")
            .ignore_status()
            .quiet()
            .output()?;
        let found = match out.status.code() {
            Some(0) => false,
            Some(FOUND) => true,
            code => bail!("Trivy could not scan {} (exit {code:?}): {}", archive.display(), trivy_error(&out.stderr)),
        };
        Ok((serde_json::from_slice(&out.stdout).context("reading Trivy's report")?, found))
    };
    // Every finding, every severity, and every package (the report's own list).
    let (report, _) = run(&["--format", "json", "--list-all-pkgs"])?;
    // The gate: Trivy's exit code at the blocking severities.
    let (gated, blocked) = run(&["--format", "json", "--severity", BLOCKING, "--exit-code", &FOUND.to_string()])?;
    let blocking = findings(&gated);
    if blocked == blocking.is_empty() {
        bail!("Trivy's exit code ({}) and its report ({} blocking finding(s)) disagree", u8::from(blocked), blocking.len());
    }
    let (sbom, _) = run(&["--format", "cyclonedx"])?;
    let findings = findings(&report);
    let os = operating_system(&report);
    match &os {
        Some(os) => println!("  system packages scanned as {os}'s"),
        None => println!(
            "  warning: the image records no operating system packages: its system libraries (if any) were not scanned \
             (an image built on a host without dpkg; see cluster/app_images.rs)"
        ),
    }
    let database_sha256 = crate::signing::hex_sha256(&std::fs::read(cache.join(DB_FILE))?);
    let attestation = vuln_predicate(&findings, blocking.len(), allowed, os.as_deref(), &database_sha256, built, started, Timestamp::now());
    println!(
        "  scanned with Trivy {} against {} (built {built}; {allowed} allow-listed in {ALLOW_LIST}): {} finding(s), {} blocking",
        TRIVY.version,
        cache.display(),
        findings.len(),
        blocking.len()
    );
    Ok(Scanned { findings, blocking, sbom, attestation })
}

/// cosign's vulnerability attestation predicate (`cosign attest --type vuln`) for this scan.
#[allow(clippy::too_many_arguments)]
fn vuln_predicate(
    findings: &[Finding],
    blocking: usize,
    allowed: usize,
    os: Option<&str>,
    database_sha256: &str,
    built: Timestamp,
    started: Timestamp,
    finished: Timestamp,
) -> Value {
    serde_json::json!({
        "invocation": {"uri": "cargo xtask release", "parameters": {"severities": BLOCKING}},
        "scanner": {
            "uri": format!("pkg:golang/github.com/aquasecurity/trivy@{}", TRIVY.version),
            "version": TRIVY.version,
            "db": {"uri": "trivy-db (schema 2)", "version": format!("sha256:{database_sha256}"), "builtAt": built.to_string()},
            "result": {
                "findings": findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "blocking": blocking,
                "allowListed": allowed,
                "operatingSystem": os,
            }
        },
        "metadata": {"scanStartedOn": started.to_string(), "scanFinishedOn": finished.to_string()}
    })
}

/// The gate: passes unless Trivy found a HIGH, CRITICAL or UNKNOWN finding; says every finding.
pub fn gate(scanned: &Scanned) -> Result<()> {
    for finding in &scanned.findings {
        println!("    {} {finding}", if finding.blocks() { "BLOCKS" } else { "noted " });
    }
    if !scanned.blocking.is_empty() {
        let system = scanned.blocking.iter().any(Finding::is_system_library);
        let how = if system {
            "for a system library (a Debian package the image copies from the build machine), upgrade that package where \
             the image is built and release again; for a crate, cargo update -p NAME"
        } else {
            "upgrade the crate (cargo update -p NAME) and release again"
        };
        bail!(
            "vulnerability gate: {} HIGH, CRITICAL or unscored finding(s): {}. To fix: {how}; or allow-list it in {ALLOW_LIST} \
             with a statement and an expiry (expired_at)",
            scanned.blocking.len(),
            scanned.blocking.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// The database a release is scanned against: the one given (`--vuln-db`), else the one Trivy
/// downloads itself into the cache where its feed is reachable (`--download-db-only`), fetched
/// again once older than `max_age_days`; says which it is. Where the feed is not reachable (an
/// offline machine), the error says what was tried and how to give one.
pub fn database(sh: &Shell, given: Option<PathBuf>, max_age_days: u32) -> Result<Database> {
    if let Some(dir) = given {
        println!("vulnerability database: {} (given)", dir.display());
        return Ok(Database { dir, max_age_days });
    }
    let database = Database { dir: crate::cache::root()?.join("trivy"), max_age_days };
    let dir = database.dir.display().to_string();
    if let Ok(built) = check_database(&database, Timestamp::now()) {
        println!("vulnerability database: {dir} (fetched by Trivy earlier; built {built})");
        return Ok(database);
    }
    println!("vulnerability database: none given; fetching Trivy's into {dir} (trivy image --download-db-only)");
    match fetch(sh, &database.dir).and_then(|()| check_database(&database, Timestamp::now())) {
        Ok(built) => {
            println!("  fetched: built {built}");
            Ok(database)
        }
        Err(err) => bail!(
            "no vulnerability database: none was given (--vuln-db DIR or SHIPSHAPE_VULN_DB), and fetching Trivy's into {dir} \
             failed ({err:#}). `release` scans every image before signing it: on a machine that cannot reach Trivy's \
             database, give one, {FETCH_HINT}"
        ),
    }
}

/// Trivy's own download of its database into `dir`.
fn fetch(sh: &Shell, dir: &Path) -> Result<()> {
    let bin = TRIVY.find(sh)?;
    let out = cmd!(sh, "{bin} image --download-db-only --cache-dir {dir} --no-progress --skip-version-check --disable-telemetry")
        .ignore_status()
        .quiet()
        .output()?;
    if !out.status.success() {
        bail!("Trivy did not fetch it: {}", trivy_error(&out.stderr));
    }
    Ok(())
}

/// What Trivy said of its failure: from its FATAL line on (an error can span lines, e.g. one
/// per way it tried to open an archive), else all it printed.
fn trivy_error(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let why = stderr.find("FATAL").map_or_else(|| stderr.trim(), |at| stderr[at..].trim());
    if why.is_empty() {
        "no output".to_owned()
    } else {
        why.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Trivy report as v0.74 writes it: a crate in the binary, a system library.
    fn report() -> Value {
        json!({
            "Metadata": {"OS": {"Family": "debian", "Name": "12.11"}},
            "Results": [
                {"Target": "image.tar (debian 12.11)", "Class": "os-pkgs", "Type": "debian",
                 "Packages": [{"ID": "libc6@2.36-9+deb12u14", "Name": "libc6", "SrcName": "glibc"}],
                 "Vulnerabilities": [{"VulnerabilityID": "CVE-2099-0003", "PkgID": "libc6@2.36-9+deb12u14", "PkgName": "libc6",
                                      "InstalledVersion": "2.36-9+deb12u14", "Severity": "HIGH"}]},
                {"Target": "usr/local/bin/model-server", "Class": "lang-pkgs", "Type": "rustbinary",
                 "Vulnerabilities": [
                    {"VulnerabilityID": "RUSTSEC-2099-0001", "PkgID": "axum@0.8.9", "PkgName": "axum", "InstalledVersion": "0.8.9", "Severity": "CRITICAL"},
                    {"VulnerabilityID": "RUSTSEC-2099-0002", "PkgID": "tokio@1.0.0", "PkgName": "tokio", "InstalledVersion": "1.0.0", "Severity": "UNKNOWN"},
                    {"VulnerabilityID": "RUSTSEC-2099-0004", "PkgID": "hyper@1.0.0", "PkgName": "hyper", "InstalledVersion": "1.0.0", "Severity": "MEDIUM"}]}
            ]
        })
    }

    #[test]
    fn findings_name_the_package_its_source_and_the_severity() {
        let found = findings(&report());
        let said: Vec<String> = found.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            said,
            [
                "CVE-2099-0003 libc6 (system library, Debian source glibc) 2.36-9+deb12u14: HIGH",
                "RUSTSEC-2099-0001 axum 0.8.9: CRITICAL",
                "RUSTSEC-2099-0002 tokio 1.0.0: severity unknown (no severity: blocks until judged)",
                "RUSTSEC-2099-0004 hyper 1.0.0: MEDIUM",
            ]
        );
        let blocks: Vec<bool> = found.iter().map(Finding::blocks).collect();
        assert_eq!(blocks, [true, true, true, false], "HIGH, CRITICAL and UNKNOWN block; MEDIUM is noted");
        assert_eq!(operating_system(&report()).as_deref(), Some("debian 12.11"));
        assert_eq!(operating_system(&json!({"Metadata": {"OS": {"Family": "none"}}})), None);
    }

    #[test]
    fn the_gate_names_what_blocks_and_how_to_fix_it() {
        let found = findings(&report());
        let blocking: Vec<Finding> = found.iter().filter(|f| f.blocks()).cloned().collect();
        let error = gate(&Scanned { findings: found.clone(), blocking, sbom: json!({}), attestation: json!({}) }).unwrap_err().to_string();
        assert!(error.contains("3 HIGH, CRITICAL or unscored") && error.contains("RUSTSEC-2099-0001"), "{error}");
        assert!(error.contains("system library") && error.contains(ALLOW_LIST), "{error}");
        let medium_only = vec![found[3].clone()];
        assert!(gate(&Scanned { findings: medium_only, blocking: vec![], sbom: json!({}), attestation: json!({}) }).is_ok());
    }

    #[test]
    fn trivy_s_failure_is_said_from_its_fatal_line() {
        let said = b"2026-12-06T01:24:44Z\tINFO\tscanning\n2026-12-06T01:24:44Z\tFATAL\tFatal error\tunable to open:\n\t* no such file\n";
        assert_eq!(trivy_error(said), "FATAL\tFatal error\tunable to open:\n\t* no such file");
        assert_eq!(trivy_error(b"  \n"), "no output");
        assert_eq!(trivy_error(b"dial tcp: no such host\n"), "dial tcp: no such host");
    }

    #[test]
    fn every_allow_list_entry_needs_a_statement_and_an_expiry() {
        let ok = "vulnerabilities:\n  - id: RUSTSEC-1\n    statement: \"not reachable\"\n    expired_at: 2027-01-01\n";
        assert_eq!(check_allow_list(ok).unwrap(), 1);
        let no_expiry = "vulnerabilities:\n  - id: RUSTSEC-1\n    statement: forever\n";
        assert!(check_allow_list(no_expiry).unwrap_err().to_string().contains("expired_at"));
        let empty_statement = "vulnerabilities:\n  - id: RUSTSEC-1\n    statement:\n    expired_at: 2027-01-01\n";
        assert!(check_allow_list(empty_statement).unwrap_err().to_string().contains("statement"));
        assert_eq!(check_allow_list("# nothing allowed\n# vulnerabilities:\n#   - id: x\nvulnerabilities: []\n").unwrap(), 0);
        // An entry's own lists are part of it; other sections are not the gate's.
        let with_paths = "vulnerabilities:\n- id: CVE-1\n  paths:\n    - usr/local/bin/model-server\n  statement: why\n  \
                          expired_at: 2027-01-01\n- id: CVE-2\n  purls:\n  - pkg:deb/debian/libc6\n  statement: why\n  \
                          expired_at: 2027-01-01\nsecrets:\n  - id: aws-access-key-id\n";
        assert_eq!(check_allow_list(with_paths).unwrap(), 2);
        let committed = std::fs::read_to_string(crate::repo_root().join(ALLOW_LIST)).unwrap();
        check_allow_list(&committed).unwrap();
    }

    /// Trivy's cache directory with a database built at `built`.
    fn database_built_at(built: &str, version: u64) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"bolt").unwrap();
        let metadata = json!({"Version": version, "NextUpdate": built, "UpdatedAt": built, "DownloadedAt": built});
        std::fs::write(dir.path().join(METADATA_FILE), metadata.to_string()).unwrap();
        let database = Database { dir: dir.path().to_owned(), max_age_days: MAX_AGE_DAYS };
        (dir, database)
    }

    #[test]
    fn a_database_is_as_old_as_its_build_and_a_stale_or_foreign_one_is_refused() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let (_dir, fresh) = database_built_at("2026-12-04T23:00:00Z", 2);
        assert_eq!(check_database(&fresh, now).unwrap().to_string(), "2026-12-04T23:00:00Z");
        let (_dir, stale) = database_built_at("2026-10-01T00:00:00Z", 2);
        let refused = check_database(&stale, now).unwrap_err().to_string();
        assert!(
            refused.contains("65 days old") && refused.contains("--max-vuln-db-age") && refused.contains("Fetch a fresh one"),
            "{refused}"
        );
        let knowingly = Database { max_age_days: 90, ..stale };
        assert!(check_database(&knowingly, now).is_ok());
        let (_dir, old_schema) = database_built_at("2026-12-04T23:00:00Z", 1);
        assert!(check_database(&old_schema, now).unwrap_err().to_string().contains("schema 1"));
        let none = Database { dir: "/nonexistent".into(), max_age_days: 7 };
        assert!(check_database(&none, now).unwrap_err().to_string().contains("--vuln-db"));
    }

    #[test]
    fn the_scan_is_attested_with_its_database_and_time() {
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let found = findings(&report());
        let predicate = vuln_predicate(
            &found[3..],
            0,
            1,
            Some("debian 12.11"),
            "ab12",
            at("2026-12-04T00:00:00Z"),
            at("2026-12-05T10:00:00Z"),
            at("2026-12-05T10:00:09Z"),
        );
        assert_eq!(predicate["scanner"]["uri"], "pkg:golang/github.com/aquasecurity/trivy@v0.74.0");
        assert_eq!(predicate["scanner"]["db"]["version"], "sha256:ab12");
        assert_eq!(predicate["scanner"]["db"]["builtAt"], "2026-12-04T00:00:00Z");
        assert_eq!(predicate["scanner"]["result"]["findings"][0], "RUSTSEC-2099-0004 hyper 1.0.0: MEDIUM");
        assert_eq!(predicate["scanner"]["result"]["blocking"], 0);
        assert_eq!(predicate["scanner"]["result"]["operatingSystem"], "debian 12.11");
        assert_eq!(predicate["metadata"]["scanFinishedOn"], "2026-12-05T10:00:09Z");
    }
}
