//! The vulnerability gate before a release is signed (the runbook's Trivy step): the pinned
//! osv-scanner reads the image (model-server is built with `cargo auditable`, so its crates are
//! embedded in the binary), matches it against a vulnerability database the user provides (no
//! feed is reachable from these machines), and HIGH or CRITICAL findings (CVSS >= 7.0), and
//! findings with no score at all, refuse the release unless allow-listed, each entry with a
//! reason and an expiry date. The same scan
//! gives the image's SBOM (CycloneDX), which `release` attaches as a signed attestation.
//!
//! Every osv-scanner call is here.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::tools::OSV_SCANNER;

/// The allow-list, in osv-scanner's own config format (`[[IgnoredVulns]]` with `id`,
/// `ignoreUntil` and `reason`); shipshape requires all three on every entry.
pub const ALLOW_LIST: &str = "deploy/scan/allowlist.toml";
/// CVSS base score from which a finding is HIGH (7.0-8.9) or CRITICAL (9.0-10).
pub const HIGH: f64 = 7.0;
/// osv-scanner's folder for one ecosystem's database inside `--local-db-path`.
const RUST_DB: &str = "osv-scalibr/crates.io/all.zip";

/// One vulnerability group osv-scanner reported for a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub package: String,
    pub version: String,
    pub ids: Vec<String>,
    /// CVSS base score; None when the advisory gives none.
    pub score: Option<f64>,
}

impl Finding {
    /// HIGH and CRITICAL block, and so does an advisory with no score: nobody has judged it
    /// yet, and "unknown" is not "low" (it blocks until allow-listed with a reason and an
    /// expiry, or scored).
    pub fn blocks(&self) -> bool {
        self.score.is_none_or(|s| s >= HIGH)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.score {
            Some(s) if s >= 9.0 => format!("CRITICAL {s}"),
            Some(s) if s >= HIGH => format!("HIGH {s}"),
            Some(s) if s >= 4.0 => format!("MEDIUM {s}"),
            Some(s) => format!("LOW {s}"),
            None => "severity unknown (no CVSS score: blocks until judged)".to_owned(),
        };
        write!(f, "{} {} {}: {severity}", self.ids.join("/"), self.package, self.version)
    }
}

/// The vulnerability database a scan reads, and how old it may be.
#[derive(Clone, Debug)]
pub struct Database {
    /// osv-scanner's `--local-db-path`: holds [`RUST_DB`], and the database of every other
    /// ecosystem the image holds packages of (Debian's, for the libraries beside the binary).
    pub dir: PathBuf,
    /// Refused when its newest advisory is older than this many days.
    pub max_age_days: u32,
    /// shipshape's own cache, which osv-scanner fills where OSV's feed is reachable: an
    /// ecosystem's database missing there is fetched during the scan (never into a given one).
    pub fetched: bool,
}

/// How old a database may be unless told otherwise: one older misses what was published since
/// (Grype refuses one older than 5 days by default; the RustSec feed moves daily).
pub const MAX_AGE_DAYS: u32 = 7;

const FETCH_HINT: &str = "e.g. one made on a connected machine with `osv-scanner scan image --archive IMAGE.tar \
                          --offline-vulnerabilities --download-offline-databases --local-db-path DIR` (the databases of \
                          every ecosystem the image holds: crates.io's and Debian's)";

/// The database `--vuln-db` names holds osv-scanner's Rust database, and every ecosystem's
/// database in it is fresh enough: the oldest one's newest advisory was modified within
/// `max_age_days` of `now`. Returns that time.
pub fn check_database(database: &Database, now: Timestamp) -> Result<Timestamp> {
    let path = &database.dir;
    if !path.join(RUST_DB).is_file() {
        bail!(
            "{} holds no vulnerability database ({RUST_DB} is missing): give --vuln-db (or SHIPSHAPE_VULN_DB) a directory \
             with osv-scanner's offline databases, {FETCH_HINT}",
            path.display()
        );
    }
    // The oldest of the ecosystems' databases (crates.io's among them) decides: each zip is as
    // current as its newest advisory.
    let mut newest = None::<Timestamp>;
    for zip in ecosystem_databases(path)? {
        let its = newest_advisory(&zip)?;
        newest = Some(newest.map_or(its, |n| n.min(its)));
    }
    let newest = newest.context("no ecosystem's database")?;
    let age_days = now.duration_since(newest).as_secs() / 86_400;
    if age_days > i64::from(database.max_age_days) {
        bail!(
            "the vulnerability database in {} is {age_days} days old (its newest advisory was modified {newest}): a stale \
             database passes what was published since. Fetch a fresh one, {FETCH_HINT}; or, knowingly, allow an older \
             one with --max-vuln-db-age DAYS (now {})",
            path.display(),
            database.max_age_days
        );
    }
    Ok(newest)
}

/// Every ecosystem's database in `dir` (`osv-scalibr/<ecosystem>/all.zip`).
fn ecosystem_databases(dir: &Path) -> Result<Vec<PathBuf>> {
    let root = dir.join("osv-scalibr");
    let mut zips = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let zip = entry?.path().join("all.zip");
        if zip.is_file() {
            zips.push(zip);
        }
    }
    zips.sort();
    Ok(zips)
}

/// The ecosystems whose packages osv-scanner found but had no database for (it says so on
/// stderr, "could not load db for Debian ecosystem", and exits 0 having matched nothing).
fn unmatched_ecosystems(stderr: &str) -> Vec<String> {
    let mut found: Vec<String> = stderr
        .lines()
        .filter_map(|line| line.split("could not load db for ").nth(1)?.split(" ecosystem").next().map(str::to_owned))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// When the newest advisory in an OSV zip (one JSON record per entry) was modified: how
/// current the database is, whatever the file's own time says.
fn newest_advisory(zip_path: &Path) -> Result<Timestamp> {
    let file = std::fs::File::open(zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip of OSV records", zip_path.display()))?;
    let mut newest: Option<Timestamp> = None;
    for index in 0..archive.len() {
        let entry = archive.by_index(index)?;
        if !entry.name().ends_with(".json") {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Record {
            modified: Timestamp,
        }
        let record: Record = serde_json::from_reader(entry).with_context(|| format!("an OSV record in {}", zip_path.display()))?;
        newest = newest.max(Some(record.modified));
    }
    newest.with_context(|| format!("{} holds no OSV records", zip_path.display()))
}

/// Every entry of the allow-list has an id, a reason and an expiry date (`ignoreUntil`).
pub fn check_allow_list(text: &str) -> Result<usize> {
    let text: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect();
    let mut entries = 0;
    for (n, block) in text.split("[[IgnoredVulns]]").enumerate().skip(1) {
        let has = |key: &str| block.lines().any(|l| l.trim_start().starts_with(key) && l.contains('='));
        let missing: Vec<&str> = ["id", "reason", "ignoreUntil"].into_iter().filter(|k| !has(k)).collect();
        if !missing.is_empty() {
            bail!("{ALLOW_LIST}: entry {n} has no {}: every allowed finding needs an id, a reason and an expiry date", missing.join(", "));
        }
        entries += 1;
    }
    Ok(entries)
}

/// The findings osv-scanner reported (allow-listed ones already left out by it).
pub fn findings(report: &Value) -> Vec<Finding> {
    let mut found = Vec::new();
    for source in report["results"].as_array().into_iter().flatten() {
        for package in source["packages"].as_array().into_iter().flatten() {
            for group in package["groups"].as_array().into_iter().flatten() {
                found.push(Finding {
                    package: package["package"]["name"].as_str().unwrap_or_default().to_owned(),
                    version: package["package"]["version"].as_str().unwrap_or_default().to_owned(),
                    ids: group["ids"].as_array().into_iter().flatten().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                    score: group["max_severity"].as_str().and_then(|s| s.parse().ok()),
                });
            }
        }
    }
    found
}

/// The operating system's packages the scan found (`"type": "os"` sources: the image's
/// `/var/lib/dpkg/status.d`), as CycloneDX components, by their source package as Debian's
/// advisories name them (glibc, gcc-12).
pub fn system_packages(report: &Value) -> Vec<Value> {
    let mut components = Vec::new();
    for source in report["results"].as_array().into_iter().flatten().filter(|s| s["source"]["type"] == "os") {
        for package in source["packages"].as_array().into_iter().flatten() {
            let (name, version) =
                (package["package"]["name"].as_str().unwrap_or_default(), package["package"]["version"].as_str().unwrap_or_default());
            // "Debian:12" -> pkg:deb/debian/glibc@2.36-9+deb12u14?distro=debian-12
            let ecosystem = package["package"]["ecosystem"].as_str().unwrap_or_default();
            let (distro, release) = ecosystem.split_once(':').unwrap_or((ecosystem, ""));
            let distro = distro.to_lowercase();
            components.push(serde_json::json!({
                "type": "library",
                "name": name,
                "version": version,
                "purl": format!("pkg:deb/{distro}/{name}@{version}?distro={distro}-{release}"),
                "properties": [{"name": "shipshape:found-in", "value": source["source"]["path"].clone()}],
            }));
        }
    }
    components
}

/// `sbom` with `components` added (those it does not list already, by purl).
fn add_components(sbom: &mut Value, components: &[Value]) {
    let listed = sbom["components"].as_array().cloned().unwrap_or_default();
    let mut all = listed.clone();
    all.extend(components.iter().filter(|c| !listed.iter().any(|l| l["purl"] == c["purl"])).cloned());
    sbom["components"] = Value::Array(all);
}

/// The scan of one image archive (`docker save`): the findings, the CycloneDX SBOM, and what
/// `release` attests of the scan (cosign's vuln predicate: the scanner, the database's digest
/// and date, the findings, when).
pub struct Scanned {
    pub findings: Vec<Finding>,
    pub sbom: Value,
    pub attestation: Value,
}

/// Scans `archive` against `database`, with the allow-list.
pub fn scan(sh: &Shell, archive: &Path, database: &Database) -> Result<Scanned> {
    let started = Timestamp::now();
    let as_of = check_database(database, started)?;
    let fetching = database.fetched;
    let database = &database.dir;
    let allow_list = crate::repo_root().join(ALLOW_LIST);
    let allowed = check_allow_list(&std::fs::read_to_string(&allow_list).with_context(|| format!("reading {ALLOW_LIST}"))?)?;
    let bin = OSV_SCANNER.find(sh)?;
    // `fetch`: let osv-scanner download the databases it lacks (shipshape's cache only).
    let run = |format: &str, fetch: bool| -> Result<(Value, Vec<String>)> {
        // Every package found, not only the vulnerable ones: the SBOM, and the report's
        // system packages, which osv-scanner's CycloneDX leaves out.
        let all = ["--all-packages"];
        let offline: &[&str] = if fetch { &["--offline-vulnerabilities", "--download-offline-databases"] } else { &["--offline"] };
        // Exit 1 means "vulnerabilities found": the JSON says which; 127 and 128 are errors.
        let out = cmd!(
            sh,
            "{bin} scan image --archive {archive} {offline...} --local-db-path {database} --config {allow_list} --format {format} {all...}"
        )
        .ignore_status()
        .quiet()
        .output()?;
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if code != 0 && code != 1 {
            let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_owned();
            bail!("osv-scanner could not scan {} (exit {code}): {why}", archive.display());
        }
        let report = serde_json::from_slice(&out.stdout).with_context(|| format!("reading osv-scanner's {format} output"))?;
        Ok((report, unmatched_ecosystems(&stderr)))
    };
    let (mut report, mut unmatched) = run("json", false)?;
    if !unmatched.is_empty() && fetching {
        println!(
            "  fetching OSV's {} database(s) into {} (osv-scanner --download-offline-databases)",
            unmatched.join(", "),
            database.display()
        );
        (report, unmatched) = run("json", true)?;
    }
    if !unmatched.is_empty() {
        bail!(
            "the image holds {} packages (the system libraries beside the binary, recorded in /var/lib/dpkg/status.d) and {} \
             has no database for them, so they were not scanned: give a database with osv-scanner's {} database(s) too, {FETCH_HINT}",
            unmatched.join(", "),
            database.display(),
            unmatched.join(", ")
        );
    }
    // Every database the scan read, in one digest: crates.io's, then the others by name.
    let mut read = Vec::new();
    for zip in ecosystem_databases(database)? {
        read.extend(std::fs::read(&zip)?);
    }
    let database_sha256 = crate::signing::hex_sha256(&read);
    let (mut sbom, _) = run("cyclonedx-1-5", false)?;
    let system = system_packages(&report);
    add_components(&mut sbom, &system);
    let findings = findings(&report);
    let attestation = vuln_predicate(&findings, allowed, &database_sha256, as_of, started, Timestamp::now());
    println!(
        "  scanned with osv-scanner {} against {} (newest advisory {as_of}; {allowed} allow-listed in {ALLOW_LIST}): {} finding(s)",
        OSV_SCANNER.version,
        database.display(),
        findings.len()
    );
    Ok(Scanned { findings, sbom, attestation })
}

/// cosign's vulnerability attestation predicate (`cosign attest --type vuln`) for this scan.
fn vuln_predicate(
    findings: &[Finding],
    allowed: usize,
    database_sha256: &str,
    as_of: Timestamp,
    started: Timestamp,
    finished: Timestamp,
) -> Value {
    serde_json::json!({
        "invocation": {"uri": "cargo xtask release", "parameters": {"severities": "HIGH,CRITICAL,unscored"}},
        "scanner": {
            "uri": format!("pkg:golang/github.com/google/osv-scanner/v2@{}", OSV_SCANNER.version),
            "version": OSV_SCANNER.version,
            "db": {"uri": "osv-scalibr/*/all.zip", "version": format!("sha256:{database_sha256}"), "newestAdvisory": as_of.to_string()},
            "result": {
                "findings": findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "blocking": findings.iter().filter(|f| f.blocks()).count(),
                "allowListed": allowed
            }
        },
        "metadata": {"scanStartedOn": started.to_string(), "scanFinishedOn": finished.to_string()}
    })
}

/// The gate: passes unless a HIGH, CRITICAL or unscored finding is left; says every finding.
pub fn gate(scanned: &Scanned) -> Result<()> {
    for finding in &scanned.findings {
        println!("    {} {finding}", if finding.blocks() { "BLOCKS" } else { "noted " });
    }
    let blocking: Vec<String> = scanned.findings.iter().filter(|f| f.blocks()).map(|f| f.to_string()).collect();
    if !blocking.is_empty() {
        bail!(
            "vulnerability gate: {} HIGH, CRITICAL or unscored finding(s): {}. Upgrade the crate (cargo update -p NAME); for a \
             system library (a Debian package such as glibc: the image copies the build machine's), upgrade that package \
             where the image is built and release again; or allow-list it in {ALLOW_LIST} with a reason and an expiry date",
            blocking.len(),
            blocking.join("; ")
        );
    }
    Ok(())
}

/// The database a release is scanned against: the one given (`--vuln-db`), else the one
/// osv-scanner fetches itself into the cache where OSV's feed is reachable (its own download
/// option), fetched again once older than `max_age_days`; says which it is. Where the feed is not
/// reachable (an offline machine), the error says what was tried and how to give one.
pub fn database(sh: &Shell, given: Option<PathBuf>, max_age_days: u32) -> Result<Database> {
    if let Some(dir) = given {
        println!("vulnerability database: {} (given)", dir.display());
        return Ok(Database { dir, max_age_days, fetched: false });
    }
    let database = Database { dir: crate::cache::root()?.join("osv-db"), max_age_days, fetched: true };
    let dir = database.dir.display().to_string();
    if let Ok(newest) = check_database(&database, Timestamp::now()) {
        println!("vulnerability database: {dir} (fetched from OSV earlier; newest advisory {newest})");
        return Ok(database);
    }
    println!("vulnerability database: none given; fetching OSV's crates.io database into {dir} (osv-scanner --download-offline-databases)");
    match fetch(sh, &database.dir).and_then(|()| check_database(&database, Timestamp::now())) {
        Ok(newest) => {
            println!("  fetched: newest advisory {newest}");
            Ok(database)
        }
        Err(err) => bail!(
            "no vulnerability database: none was given (--vuln-db DIR or SHIPSHAPE_VULN_DB), and fetching OSV's into {dir} failed \
             ({err:#}). `release` scans every image before signing it: on a machine that cannot reach OSV, give a database, \
             {FETCH_HINT}"
        ),
    }
}

/// osv-scanner's own download of the databases of the ecosystems it finds: the workspace's
/// Cargo.lock alone, so crates.io's. It exits 0 when the download failed (having scanned
/// nothing), so the database's presence is what says it worked.
fn fetch(sh: &Shell, dir: &Path) -> Result<()> {
    let bin = OSV_SCANNER.find(sh)?;
    let source = tempfile::tempdir()?;
    std::fs::copy(crate::repo_root().join("Cargo.lock"), source.path().join("Cargo.lock")).context("copying Cargo.lock")?;
    let source = source.path();
    let out = cmd!(sh, "{bin} scan source --offline-vulnerabilities --download-offline-databases --local-db-path {dir} {source}")
        .ignore_status()
        .output()?;
    if !dir.join(RUST_DB).is_file() {
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let why = said.lines().find(|l| l.contains("unable to fetch")).unwrap_or_else(|| said.lines().last().unwrap_or("no output"));
        bail!("osv-scanner did not fetch it: {}", why.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_image_s_system_packages_join_the_sbom() {
        let report = json!({"results": [
            {"source": {"path": "/usr/local/bin/model-server", "type": "artifact"}, "packages": [{"package": {"name": "axum", "version": "0.8.9", "ecosystem": "crates.io"}}]},
            {"source": {"path": "/var/lib/dpkg/status.d/libc6", "type": "os"}, "packages": [{"package": {"name": "glibc", "version": "2.36-9+deb12u14", "ecosystem": "Debian:12"}}]}
        ]});
        let system = system_packages(&report);
        assert_eq!(system.len(), 1);
        assert_eq!(system[0]["purl"], "pkg:deb/debian/glibc@2.36-9+deb12u14?distro=debian-12");
        let mut sbom = json!({"components": [{"name": "axum", "purl": "pkg:cargo/axum@0.8.9"}]});
        add_components(&mut sbom, &system);
        add_components(&mut sbom, &system);
        let names: Vec<&str> = sbom["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["axum", "glibc"], "added once");
    }

    #[test]
    fn findings_carry_ids_packages_and_scores() {
        let report = json!({"results": [{"packages": [{
            "package": {"name": "axum", "version": "0.8.4", "ecosystem": "crates.io"},
            "groups": [{"ids": ["RUSTSEC-2099-0001"], "max_severity": "9.8"}, {"ids": ["RUSTSEC-2099-0002"], "max_severity": ""}]
        }]}]});
        let found = findings(&report);
        assert_eq!(found.len(), 2);
        assert!(found[0].blocks());
        assert_eq!(found[0].to_string(), "RUSTSEC-2099-0001 axum 0.8.4: CRITICAL 9.8");
        assert!(found[1].blocks(), "no score: unknown is not low, it blocks until judged");
        assert_eq!(found[1].to_string(), "RUSTSEC-2099-0002 axum 0.8.4: severity unknown (no CVSS score: blocks until judged)");
        let medium = Finding { score: Some(5.3), ..found[0].clone() };
        assert!(!medium.blocks(), "MEDIUM is noted, not blocking");
        assert!(gate(&Scanned { findings: found, sbom: json!({}), attestation: json!({}) })
            .unwrap_err()
            .to_string()
            .contains("RUSTSEC-2099-0001"));
    }

    #[test]
    fn every_allow_list_entry_needs_a_reason_and_an_expiry() {
        let ok = "[[IgnoredVulns]]\nid = \"RUSTSEC-1\"\nignoreUntil = 2027-01-01\nreason = \"not reachable\"\n";
        assert_eq!(check_allow_list(ok).unwrap(), 1);
        let no_expiry = "[[IgnoredVulns]]\nid = \"RUSTSEC-1\"\nreason = \"forever\"\n";
        assert!(check_allow_list(no_expiry).unwrap_err().to_string().contains("ignoreUntil"));
        assert_eq!(check_allow_list("# nothing allowed\n# [[IgnoredVulns]]\n# id = \"x\"\n").unwrap(), 0);
        let committed = std::fs::read_to_string(crate::repo_root().join(ALLOW_LIST)).unwrap();
        check_allow_list(&committed).unwrap();
    }

    /// An OSV zip as the feed serves it (deflated records), with advisories modified at `times`.
    fn database_modified_at(times: &[&str]) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join(RUST_DB);
        std::fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (n, time) in times.iter().enumerate() {
            zip.start_file(format!("RUSTSEC-2026-{n:04}.json"), options).unwrap();
            std::io::Write::write_all(&mut zip, json!({"id": format!("RUSTSEC-2026-{n:04}"), "modified": time}).to_string().as_bytes())
                .unwrap();
        }
        zip.finish().unwrap();
        let database = Database { dir: dir.path().to_owned(), max_age_days: MAX_AGE_DAYS, fetched: false };
        (dir, database)
    }

    #[test]
    fn a_database_is_as_old_as_its_newest_advisory_and_a_stale_one_is_refused() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let (_dir, fresh) = database_modified_at(&["2025-01-01T00:00:00Z", "2026-12-04T23:00:00Z"]);
        assert_eq!(check_database(&fresh, now).unwrap().to_string(), "2026-12-04T23:00:00Z");
        let (_dir, stale) = database_modified_at(&["2026-10-01T00:00:00Z"]);
        let refused = check_database(&stale, now).unwrap_err().to_string();
        assert!(
            refused.contains("65 days old") && refused.contains("--max-vuln-db-age") && refused.contains("Fetch a fresh one"),
            "{refused}"
        );
        let knowingly = Database { max_age_days: 90, ..stale };
        assert!(check_database(&knowingly, now).is_ok());
        let none = Database { dir: "/nonexistent".into(), max_age_days: 7, fetched: false };
        assert!(check_database(&none, now).unwrap_err().to_string().contains("--vuln-db"));
    }

    #[test]
    fn every_ecosystem_s_database_must_be_fresh_and_one_osv_scanner_lacked_is_named() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let (dir, fresh) = database_modified_at(&["2026-12-04T23:00:00Z"]);
        // Debian's beside it, a month older: the older decides.
        let debian = dir.path().join("osv-scalibr/Debian/all.zip");
        std::fs::create_dir_all(debian.parent().unwrap()).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&debian).unwrap());
        zip.start_file("DSA-1.json", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut zip, json!({"id": "DSA-1", "modified": "2026-11-01T00:00:00Z"}).to_string().as_bytes()).unwrap();
        zip.finish().unwrap();
        let refused = check_database(&fresh, now).unwrap_err().to_string();
        assert!(refused.contains("34 days old"), "{refused}");
        let said =
            "Loaded crates.io local db from x\ncould not load db for Debian ecosystem: unable to fetch OSV database: no offline version\n\
                    could not load db for Debian ecosystem: again\n";
        assert_eq!(unmatched_ecosystems(said), ["Debian"]);
        assert!(unmatched_ecosystems("Loaded crates.io local db from x").is_empty());
    }

    #[test]
    fn the_scan_is_attested_with_its_database_and_time() {
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let finding = Finding { package: "axum".into(), version: "0.8.4".into(), ids: vec!["RUSTSEC-1".into()], score: Some(5.0) };
        let predicate =
            vuln_predicate(&[finding], 1, "ab12", at("2026-12-04T00:00:00Z"), at("2026-12-05T10:00:00Z"), at("2026-12-05T10:00:09Z"));
        assert_eq!(predicate["scanner"]["db"]["version"], "sha256:ab12");
        assert_eq!(predicate["scanner"]["db"]["newestAdvisory"], "2026-12-04T00:00:00Z");
        assert_eq!(predicate["scanner"]["result"]["findings"][0], "RUSTSEC-1 axum 0.8.4: MEDIUM 5");
        assert_eq!(predicate["scanner"]["result"]["blocking"], 0);
        assert_eq!(predicate["metadata"]["scanFinishedOn"], "2026-12-05T10:00:09Z");
    }
}
