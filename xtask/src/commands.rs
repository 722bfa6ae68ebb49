//! Each command's `run`: the command line's types (cli.rs) become the option types of the layer
//! below here, and nothing below imports a clap type (a test in tidy holds it). A command's
//! own presentation (which report, which exit code) lives with its flow; this module only
//! converts and dispatches.
use anyhow::Result;
use xshell::Shell;

use crate::cli::{self, Command};
use crate::cluster::lifecycle::{self, AddOn, ClusterTarget, ClusterUp};
use crate::flows::{
    self, bluegreen, canary, deploy, doctor, images, preflight, reload, restart, rollback, rotate, status, verify, Flow, Target,
};
use crate::report::{self, Outcome};
use crate::{chart, keys, signing};

/// Runs one parsed command from the repository's shell.
pub fn run(command: Command, sh: &Shell) -> Result<()> {
    if output_of(&command) == cli::Output::Json {
        report::json_only_on_stdout()?;
    }
    match command {
        Command::Up(cmd) => crate::up::up(sh, &cluster_up(cmd.cluster)),
        Command::Preflight(cmd) => {
            let flow = connect(sh, &cmd.target)?;
            report::exit_for(preflight::show(&flow, cmd.output.into())?)
        }
        Command::Deploy(cmd) => changing("deploy", cmd.output, |ended| {
            let mut flow = connect(sh, &cmd.target)?;
            flow.signature = signature(cmd.signature);
            flow.rollout_timeout = cmd.timeout;
            // --tag decides the image; everything else is the user's to set.
            flow.set_overrides(&overrides(cmd.values), flows::DEPLOY_MANAGED_VALUES)?;
            let deployed = deploy::deploy_wanted(&flow, &wanted(cmd.tag, cmd.from, cmd.from_namespace), cmd.dry_run).map(drop);
            ended.extend(flow.ended_runs());
            deployed
        }),
        Command::Verify(cmd) => {
            let flow = connect(sh, &cmd.target)?;
            report::repeat(cmd.watch.into(), || verify::show(&flow, cmd.output.into()))
        }
        // Its JSON document is its summary (rollback::Summary), printed by rollback::show.
        Command::Rollback(cmd) => changing("rollback", cli::Output::Human, |ended| {
            let mut flow = connect(sh, &cmd.target)?;
            flow.signature = signature(cmd.signature);
            flow.rollout_timeout = cmd.timeout;
            let to = match (cmd.to_revision, cmd.to_tag) {
                (Some(revision), _) => rollback::To::Revision(revision),
                (None, Some(tag)) => rollback::To::Tag(tag),
                (None, None) => rollback::To::Previous,
            };
            let options =
                rollback::Options { skip_verification: cmd.skip_verification, dry_run: cmd.dry_run, clear_pending: cmd.clear_pending };
            let rolled_back = rollback::rollback(&flow, to, &options);
            ended.extend(flow.ended_runs());
            match rolled_back? {
                Some(summary) => rollback::show(&summary, cmd.output.into()),
                None => Ok(()),
            }
        }),
        Command::Reload(cmd) => changing("reload", cmd.output, |ended| {
            let flow = connect(sh, &cmd.target)?;
            let reloaded = reload::reload(&flow, cmd.dry_run).map(drop);
            ended.extend(flow.ended_runs());
            reloaded
        }),
        Command::Restart(cmd) => changing("restart", cmd.output, |ended| {
            let flow = connect(sh, &cmd.target)?;
            let restarted = restart::restart(&flow, cmd.dry_run);
            ended.extend(flow.ended_runs());
            restarted
        }),
        Command::RotateSecret(cmd) => changing("rotate-secret", cmd.output, |ended| {
            let kind = cmd.secret.into();
            // Refused before connecting: MLflow's password is never invented.
            let source = rotate::ValueSource::for_kind(kind, cmd.value_from, cmd.set_in_mlflow)?;
            let rotation = rotate::Rotation { kind, method: cmd.method.into(), source, set_in_mlflow: cmd.set_in_mlflow };
            let mut flow = connect(sh, &cmd.target)?;
            flow.rollout_timeout = cmd.timeout;
            let rotated = rotate::rotate(&flow, &rotation, cmd.dry_run);
            ended.extend(flow.ended_runs());
            rotated
        }),
        Command::Doctor(cmd) => {
            let flow = connect(sh, &cmd.target)?;
            report::repeat(cmd.watch.into(), || doctor::show(&flow, cmd.output.into()))
        }
        Command::Status(cmd) => {
            let flow = connect(sh, &cmd.target)?;
            report::repeat(cmd.watch.into(), || status::show(&flow, cmd.last, cmd.output.into()))
        }
        Command::Environments(cmd) => {
            let namespaces: Vec<(crate::chart::Env, String)> =
                cmd.namespace.into_iter().map(|(env, namespace)| (env.into(), namespace)).collect();
            report::exit_for(flows::environments::show(sh, cmd.kubeconfig.as_deref(), &namespaces, cmd.output.into())?)
        }
        Command::Canary(cmd) => run_canary(cmd.action, sh),
        Command::Bluegreen(cmd) => run_bluegreen(cmd.action, sh),
        Command::Cluster(cmd) => match cmd.action {
            cli::ClusterAction::Up(args) => {
                let cluster = lifecycle::up(sh, &cluster_up(args))?;
                lifecycle::print_how_to_use(&cluster);
                Ok(())
            }
            cli::ClusterAction::Down(args) => lifecycle::down_with_registry(sh, &cluster_target(args.target), args.remove_registry),
            cli::ClusterAction::Status(target) => lifecycle::status(sh, &cluster_target(target)),
            cli::ClusterAction::Image => lifecycle::print_node_image(sh),
        },
        Command::Image(cmd) => match cmd.action {
            cli::ImageAction::Build { tag, registry } => crate::cluster::app_images::build_and_push(sh, &tag, &registry),
        },
        Command::Tools(cmd) => match cmd.action {
            cli::ToolsAction::Install => crate::tools::install_all(sh),
            cli::ToolsAction::Check => crate::tools::check_all(sh),
        },
        Command::Render(cmd) => crate::render::render(sh, cmd.env.into(), cmd.variant.into(), cmd.tag.as_deref(), cmd.digest.as_deref()),
        Command::Test(cmd) => {
            crate::test::TestOptions { keep_cluster: cmd.keep_cluster, backtrace: cmd.backtrace, cargo_args: cmd.cargo_args }.run(sh)
        }
        Command::Bench(cmd) => crate::bench::BenchOptions {
            runs: cmd.runs,
            cluster_starts: cmd.cluster_starts,
            skip_verify: cmd.skip_verify,
            cluster: cmd.cluster,
            no_write: cmd.no_write,
        }
        .run(sh),
        Command::Env(cmd) => {
            let target = cluster_target(cmd.cluster);
            crate::tools::print_shell_env(&target.name, &target.kubeconfig_path()?)
        }
        Command::Admission(cmd) => match cmd.action {
            cli::AdmissionAction::Apply { target, image_repository, output } => {
                let applied = (|| {
                    let flow = connect(sh, &target)?;
                    let values = flow.environment()?;
                    let repository = image_repository.unwrap_or_else(|| values.image.repository.clone());
                    flows::admission::apply(&flow, &values, &repository)
                })();
                if output == cli::Output::Json {
                    let result = applied.as_ref().map(drop).map_err(|err| anyhow::anyhow!("{err:#}"));
                    let mut document = report::command_document("admission apply", &result, &[]);
                    if let (Ok(applied), Some(fields)) = (&applied, document.as_object_mut()) {
                        fields.insert("applied".to_owned(), serde_json::to_value(applied)?);
                    }
                    report::print_json(&document)?;
                }
                applied.map(drop)
            }
        },
        Command::Keys(cmd) => match cmd.action {
            cli::KeysAction::Init => keys::init_keys(sh, &keys::private_key_path()?, &crate::repo_root().join(keys::PUBLIC_KEY)),
            cli::KeysAction::Rotate { public_key } => {
                let now = k8s_openapi::jiff::Timestamp::now();
                let public = public_key.unwrap_or_else(|| keys::next_public_key(now));
                let private = keys::private_key_path()?;
                let rotated = keys::rotate_keys(sh, &private, &public, now)?;
                println!(
                    "new private key: {} (encrypted with $COSIGN_PASSWORD): releases are signed with it from now on",
                    private.display()
                );
                println!("old private key: {} (kept, never deleted: re-signing may need it)", rotated.retired_private.display());
                println!("new public key:  {} (commit it)", rotated.public.display());
                print!("{}", keys::rotation_next_steps(&rotated.public, &keys::listed_by_environments()?));
                Ok(())
            }
        },
        Command::Release(cmd) => match cmd.half {
            None => {
                let tag = cmd.tag.unwrap_or_default();
                let database = crate::scan::database(sh, cmd.build.vuln_db, cmd.build.max_vuln_db_age)?;
                let key = keys::private_key_path()?;
                let released = flows::release::release(sh, &tag, &cmd.registry, &key, &database, cmd.build.allow_dirty)?;
                say_released(&released, cmd.output)
            }
            Some(cli::ReleaseHalf::Build { tag, build, out, output }) => {
                let database = crate::scan::database(sh, build.vuln_db, build.max_vuln_db_age)?;
                let record = flows::release::build_to(sh, &tag, &database, build.allow_dirty, &out)?;
                println!(
                    "built and scanned {tag} ({}): publish it with `cargo xtask release publish --from {}`",
                    record.image_id,
                    out.display()
                );
                report::github_output(&[("image-id", record.image_id.as_str())]);
                if output == cli::Output::Json {
                    report::print_json(&serde_json::to_value(&record)?)?;
                }
                Ok(())
            }
            Some(cli::ReleaseHalf::Publish { from, registry, output }) => {
                let released = flows::release::publish_from(sh, &from, &registry, &keys::private_key_path()?)?;
                say_released(&released, output)
            }
        },
        Command::Completions(cmd) => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(cmd.shell, &mut cli::Cli::command(), "xtask", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    }
}

fn run_canary(action: cli::CanaryAction, sh: &Shell) -> Result<()> {
    use canary::Request;
    match action {
        cli::CanaryAction::Start(start) => changing("canary start", start.output, |ended| {
            let start = *start;
            let mut flow = connect(sh, &start.target)?;
            flow.signature = signature(start.signature);
            flow.rollout_timeout = start.timeout;
            flow.set_overrides(&overrides(start.values), flows::FLOW_MANAGED_VALUES)?;
            let options = canary::StartOptions {
                image: wanted(start.tag, start.from, start.from_namespace),
                steps: start.steps,
                analysis_seconds: start.analysis_seconds,
                min_requests: start.min_requests,
                max_error_rate: start.max_error_rate,
                max_latency_ratio: start.max_latency_ratio,
                max_memory_ratio: start.max_memory_ratio,
                max_cpu_ratio: start.max_cpu_ratio,
                approval: start.approval.map(Into::into),
                prometheus: start.prometheus,
                checks: start.checks,
                dry_run: start.dry_run,
            };
            if options.dry_run {
                return canary::start_canary(&flow, &options).map(drop);
            }
            let started = canary::with_step_summary(&flow, canary::start_canary(&flow, &options));
            ended.extend(flow.ended_runs());
            canary::exit_code(&started?)
        }),
        cli::CanaryAction::Promote(t) => changing("canary promote", t.output, |ended| {
            let mut flow = connect(sh, &t.target)?;
            flow.signature = signature(t.signature);
            flow.rollout_timeout = t.timeout;
            let promoted = canary::with_step_summary(&flow, canary::continue_canary(&flow, Request::Promote, t.run.as_deref()));
            ended.extend(flow.ended_runs());
            promoted.map(drop)
        }),
        cli::CanaryAction::Abort(t) => changing("canary abort", t.output, |ended| {
            let mut flow = connect(sh, &t.target)?;
            flow.rollout_timeout = t.timeout;
            let aborted = canary::with_step_summary(&flow, canary::continue_canary(&flow, Request::Abort, t.run.as_deref()));
            ended.extend(flow.ended_runs());
            aborted.map(drop)
        }),
        cli::CanaryAction::Resume(t) => changing("canary resume", t.output, |ended| {
            let mut flow = connect(sh, &t.target)?;
            flow.signature = signature(t.signature);
            flow.rollout_timeout = t.timeout;
            let resumed = canary::with_step_summary(&flow, canary::continue_canary(&flow, Request::Resume, t.run.as_deref()));
            ended.extend(flow.ended_runs());
            canary::exit_code(&resumed?)
        }),
        cli::CanaryAction::Status(s) => {
            let flow = connect(sh, &s.target)?;
            report::repeat(s.watch.into(), || canary::status(&flow, s.output.into()))
        }
    }
}

fn run_bluegreen(action: cli::BlueGreenAction, sh: &Shell) -> Result<()> {
    match action {
        cli::BlueGreenAction::Start(start) => changing("bluegreen start", start.output, |ended| {
            let mut flow = connect(sh, &start.target)?;
            flow.signature = signature(start.signature);
            flow.rollout_timeout = start.timeout;
            flow.set_overrides(&overrides(start.values), flows::FLOW_MANAGED_VALUES)?;
            let options = bluegreen::StartOptions {
                image: wanted(start.tag, start.from, start.from_namespace),
                scale_down_delay: start.scale_down_delay,
                dry_run: start.dry_run,
            };
            let switched = bluegreen::start_flow(&flow, &options).map(drop);
            ended.extend(flow.ended_runs());
            switched
        }),
        cli::BlueGreenAction::Rollback(t) => changing("bluegreen rollback", t.output, |ended| {
            let mut flow = connect(sh, &t.target)?;
            flow.rollout_timeout = t.timeout;
            let rolled_back = bluegreen::rollback(&flow, t.scale_down_delay, t.dry_run).map(drop);
            ended.extend(flow.ended_runs());
            rolled_back
        }),
        cli::BlueGreenAction::Resume(t) => changing("bluegreen resume", t.output, |ended| {
            let mut flow = connect(sh, &t.target)?;
            flow.rollout_timeout = t.timeout;
            let resumed = bluegreen::resume(&flow).map(drop);
            ended.extend(flow.ended_runs());
            resumed
        }),
        cli::BlueGreenAction::Status(t) => {
            let flow = connect(sh, &t.target)?;
            report::repeat(t.watch.into(), || bluegreen::status(&flow, t.output.into()).map(|()| Outcome::Pass))
        }
    }
}

/// The `--output` a command asks for (Human for commands without one).
fn output_of(command: &Command) -> cli::Output {
    use cli::{BlueGreenAction as B, CanaryAction as C};
    match command {
        Command::Preflight(c) => c.output,
        Command::Deploy(c) => c.output,
        Command::Verify(c) => c.output,
        Command::Rollback(c) => c.output,
        Command::Reload(c) => c.output,
        Command::RotateSecret(c) => c.output,
        Command::Doctor(c) => c.output,
        Command::Status(c) => c.output,
        Command::Environments(c) => c.output,
        Command::Admission(c) => match &c.action {
            cli::AdmissionAction::Apply { output, .. } => *output,
        },
        Command::Release(c) => match &c.half {
            Some(cli::ReleaseHalf::Publish { output, .. } | cli::ReleaseHalf::Build { output, .. }) => *output,
            _ => c.output,
        },
        Command::Canary(c) => match &c.action {
            C::Start(s) => s.output,
            C::Promote(t) | C::Resume(t) => t.output,
            C::Abort(t) => t.output,
            C::Status(s) => s.output,
        },
        Command::Bluegreen(c) => match &c.action {
            B::Start(s) => s.output,
            B::Rollback(t) | B::Resume(t) => t.output,
            B::Status(s) => s.output,
        },
        _ => cli::Output::Human,
    }
}

/// A command that changes the release, reported whatever its outcome: the journal entries of
/// the runs it ended (filled in by `work`) as one JSON document with `--output json`, and in
/// GitHub Actions the last run's entry, result, Helm revision and digest in `$GITHUB_OUTPUT`
/// (for the workflow's next job: `needs.<job>.outputs.digest`).
fn changing(command: &str, output: cli::Output, work: impl FnOnce(&mut Vec<crate::journal::Entry>) -> Result<()>) -> Result<()> {
    let mut ended = Vec::new();
    let result = work(&mut ended);
    if let Some(last) = ended.last() {
        let fact = |name: &str| last.facts.get(name).map(String::as_str).unwrap_or_default();
        let mut outputs = vec![("journal-entry", last.id.as_str()), ("result", last.result.word())];
        outputs.extend(
            [("helm-revision", fact(flows::HELM_REVISION_FACT)), ("digest", fact("to_digest"))].into_iter().filter(|(_, v)| !v.is_empty()),
        );
        report::github_output(&outputs);
    }
    if output == cli::Output::Json {
        report::print_json(&report::command_document(command, &result, &ended))?;
    }
    result
}

/// The release a command works on, connected.
fn connect<'a>(sh: &'a Shell, args: &cli::TargetArgs) -> Result<Flow<'a>> {
    Flow::connect(sh, Target::new(args.env.into(), args.namespace.clone(), args.kubeconfig.as_deref(), args.context.clone())?)
}

/// `--tag T` or `--from ENV [--from-namespace NS]` (clap requires exactly one of them).
fn wanted(tag: Option<String>, from: Option<cli::Env>, namespace: Option<String>) -> images::Wanted {
    match (tag, from) {
        (_, Some(env)) => images::Wanted::From { env: env.into(), namespace },
        (tag, None) => images::Wanted::Tag(tag.unwrap_or_default()),
    }
}

fn overrides(values: cli::ValueOverrides) -> flows::Overrides {
    flows::Overrides { set: values.set, set_string: values.set_string, files: values.values }
}

/// What a release made, in words and, where asked, as JSON and `$GITHUB_OUTPUT`.
fn say_released(released: &crate::image::Pinned, output: cli::Output) -> Result<()> {
    let reference = released.reference();
    println!("released {reference}");
    println!("  deploy it: cargo xtask deploy --tag {} (or canary start / bluegreen start)", released.tag);
    report::github_output(&[("digest", released.digest.as_str()), ("reference", reference.as_str())]);
    if output == cli::Output::Json {
        report::print_json(&serde_json::json!({"tag": released.tag, "digest": released.digest, "reference": reference}))?;
    }
    Ok(())
}

fn signature(args: cli::SignatureArgs) -> signing::Request {
    signing::Request {
        public_keys: args.public_key,
        require: args.require_signature,
        skip: args.insecure_skip_signature,
        reason: args.reason,
    }
}

fn cluster_target(args: cli::ClusterTarget) -> ClusterTarget {
    ClusterTarget { name: args.name, kubeconfig: args.kubeconfig, context: args.context }
}

fn cluster_up(args: cli::ClusterUp) -> ClusterUp {
    ClusterUp {
        target: cluster_target(args.target),
        keep: args.keep,
        with: args.with.into_iter().map(Into::into).collect(),
        workers: args.workers,
    }
}

impl From<cli::Env> for chart::Env {
    fn from(env: cli::Env) -> chart::Env {
        match env {
            cli::Env::Dev => chart::Env::Dev,
            cli::Env::Staging => chart::Env::Staging,
            cli::Env::Prod => chart::Env::Prod,
        }
    }
}

impl From<cli::Variant> for chart::Variant {
    fn from(variant: cli::Variant) -> chart::Variant {
        match variant {
            cli::Variant::Stable => chart::Variant::Stable,
            cli::Variant::Canary => chart::Variant::Canary,
            cli::Variant::Blue => chart::Variant::Blue,
            cli::Variant::Green => chart::Variant::Green,
            cli::Variant::ExternalSecrets => chart::Variant::ExternalSecrets,
            cli::Variant::SealedSecrets => chart::Variant::SealedSecrets,
        }
    }
}

impl From<cli::Output> for report::Output {
    fn from(output: cli::Output) -> report::Output {
        match output {
            cli::Output::Human => report::Output::Human,
            cli::Output::Json => report::Output::Json,
        }
    }
}

impl From<cli::WatchArgs> for report::Watch {
    fn from(watch: cli::WatchArgs) -> report::Watch {
        report::Watch { every_seconds: watch.watch.then_some(watch.interval), until: watch.timeout }
    }
}

impl From<cli::Approval> for canary::Approval {
    fn from(approval: cli::Approval) -> canary::Approval {
        match approval {
            cli::Approval::Prompt => canary::Approval::Prompt,
            cli::Approval::Pause => canary::Approval::Pause,
            cli::Approval::Approved => canary::Approval::Approved,
        }
    }
}

impl From<cli::SecretKind> for rotate::SecretKind {
    fn from(kind: cli::SecretKind) -> rotate::SecretKind {
        match kind {
            cli::SecretKind::AdminToken => rotate::SecretKind::AdminToken,
            cli::SecretKind::Mlflow => rotate::SecretKind::Mlflow,
        }
    }
}

impl From<cli::SecretMethod> for rotate::SecretMethod {
    fn from(method: cli::SecretMethod) -> rotate::SecretMethod {
        match method {
            cli::SecretMethod::Manual => rotate::SecretMethod::Manual,
            cli::SecretMethod::Sealed => rotate::SecretMethod::Sealed,
            cli::SecretMethod::External => rotate::SecretMethod::External,
        }
    }
}

impl From<cli::AddOn> for AddOn {
    fn from(add_on: cli::AddOn) -> AddOn {
        match add_on {
            cli::AddOn::SealedSecrets => AddOn::SealedSecrets,
            cli::AddOn::ExternalSecrets => AddOn::ExternalSecrets,
            cli::AddOn::Prometheus => AddOn::Prometheus,
            cli::AddOn::NetworkPolicies => AddOn::NetworkPolicies,
            cli::AddOn::PolicyController => AddOn::PolicyController,
            cli::AddOn::Mlflow => AddOn::Mlflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The command line's words and the layer's names agree: a variant added on one side only
    /// fails to compile (the conversions match exhaustively); its spelling is held here.
    #[test]
    fn every_value_converts_to_the_same_word() {
        for env in cli::Env::value_variants() {
            assert_eq!(env.to_possible_value().unwrap().get_name(), chart::Env::from(*env).name());
        }
        for variant in cli::Variant::value_variants() {
            assert_eq!(variant.to_possible_value().unwrap().get_name(), chart::Variant::from(*variant).name());
        }
        for kind in cli::SecretKind::value_variants() {
            assert_eq!(kind.to_possible_value().unwrap().get_name(), rotate::SecretKind::from(*kind).name());
        }
        for method in cli::SecretMethod::value_variants() {
            assert_eq!(method.to_possible_value().unwrap().get_name(), rotate::SecretMethod::from(*method).name());
        }
        for approval in cli::Approval::value_variants() {
            let word = serde_json::to_value(canary::Approval::from(*approval)).unwrap();
            assert_eq!(approval.to_possible_value().unwrap().get_name(), word.as_str().unwrap());
        }
    }
}
