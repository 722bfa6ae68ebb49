//! Tier 2: judges no one here wrote, over .github/: actionlint (the workflows' syntax,
//! expressions, `needs:` and shell steps) and zizmor (their security: pinned actions, credentials
//! left on disk, secrets outside an environment). Both pinned, installed by `cargo xtask tools
//! install`, offline. No finding may remain; what zizmor is told to ignore is in
//! .github/zizmor.yml, each with its reason.
use std::process::Output;

fn report(what: &str, out: &Output) -> String {
    format!("{what} exited {}:\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let sh = xtask::repo_shell().unwrap();
    let actionlint = xtask::tools::ACTIONLINT.find(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    // From the repository root it reads .github/workflows/*.yml and the local actions they use.
    let out = xshell::cmd!(sh, "{actionlint} -no-color").ignore_status().quiet().output().unwrap();
    assert!(out.status.success(), "{}", report("actionlint", &out));
}

#[test]
fn zizmor_finds_nothing_in_the_workflows_and_every_ignore_has_its_reason() {
    let sh = xtask::repo_shell().unwrap();
    let zizmor = xtask::tools::ZIZMOR.command(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    // --offline: no GitHub API (the audits that need it, such as impostor commits, are skipped).
    let out = zizmor.args(["--offline", "--format", "json", ".github/"]).ignore_status().quiet().output().unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", report("zizmor", &out)));
    let findings = findings.as_array().unwrap_or_else(|| panic!("not a list of findings: {}", report("zizmor", &out)));
    let named: Vec<String> =
        findings.iter().map(|f| format!("{} ({}): {}", f["ident"], f["determinations"]["severity"], f["desc"])).collect();
    assert!(findings.is_empty(), "zizmor finds {} problem(s) in .github/:\n{}", named.len(), named.join("\n"));
    assert!(out.status.success(), "{}", report("zizmor", &out));

    // Each rule that ignores findings says why, in a comment above its `ignore:`.
    let config = std::fs::read_to_string(xtask::repo_root().join(".github/zizmor.yml")).unwrap();
    let lines: Vec<&str> = config.lines().collect();
    for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == "ignore:") {
        let reason: Vec<&str> = lines[..i].iter().rev().take_while(|l| l.trim_start().starts_with('#')).copied().collect();
        assert!(reason.join(" ").len() > 80, ".github/zizmor.yml line {}: an ignore without its reason above it", i + 1);
    }
}
