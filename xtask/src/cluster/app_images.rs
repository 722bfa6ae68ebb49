//! The application images, built with no registry: model-server (its release binary, the
//! libraries `ldd` lists and its model, FROM scratch), PostgreSQL (Debian's package in a
//! debootstrapped root filesystem) and MLflow, its model registry (Debian's python3 and
//! MLflow's pinned wheels).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::docker::Docker;
use super::layout::{pack, place};
use super::stage::Stages;
use crate::process::{read_or_explain, run_logged};

pub const MODEL_SERVER_REPOSITORY: &str = "shipshape/model-server";
/// `image build`'s default tag; `up` tags by content instead (see [`build_model_server`]).
pub const DEFAULT_TAG: &str = "dev";
/// Debian bookworm's PostgreSQL, the same major version the model-server tests run against.
pub const POSTGRES_IMAGE: &str = "shipshape/postgres:15-r2";
pub const MLFLOW_REPOSITORY: &str = "shipshape/mlflow";
/// MLflow 3.18.0 is on the index, but its mlflow-tracing 3.18.0 is not served here.
pub const MLFLOW_VERSION: &str = "3.17.2";
/// Bumped whenever [`build_mlflow`]'s recipe changes (its requirements file's hash is in the tag too).
const MLFLOW_RECIPE: &str = "r1";

/// `cargo xtask image build`: model-server tagged `tag` and PostgreSQL, built and pushed to
/// `registry` (the local one started if it is the default); prints what to deploy.
pub fn build_and_push(sh: &Shell, tag: &str, registry: &str) -> Result<()> {
    crate::image::check_tag(tag)?;
    let docker = Docker::connect(sh)?;
    if registry == super::registry::HOST {
        super::registry::ensure_running(sh, &docker)?;
    }
    let built = build_model_server(sh, &docker)?;
    let tagged = format!("{MODEL_SERVER_REPOSITORY}:{tag}");
    if crate::image::tag_of(&built) != tag {
        let log = Stages::new()?.log_path("model-server-image")?;
        docker.tag(&built, &tagged, &log)?;
    }
    println!("built {built} (also tagged {tagged})");
    let pushed = push(&docker, &tagged, registry)?;
    println!("pushed {} = {}", pushed.reference, pushed.by_digest());
    let postgres = push(&docker, &build_postgres(sh, &docker)?, registry)?;
    println!("pushed {} = {}", postgres.reference, postgres.by_digest());
    println!("deploy it: cargo xtask deploy --tag {tag} (or canary start / bluegreen start --tag {tag})");
    Ok(())
}

/// An image pushed to a registry.
pub struct Pushed {
    /// `registry/repository:tag`
    pub reference: String,
    pub digest: String,
}

impl Pushed {
    /// The pushed tag, pinned to the digest the registry gave it.
    pub fn pinned(&self) -> crate::image::Pinned {
        let reference = crate::image::Reference::parse(&self.reference).expect("a reference this process pushed");
        crate::image::Pinned { tag: reference.tag_or_latest().to_owned(), repository: reference.repository, digest: self.digest.clone() }
    }

    /// `registry/repository@sha256:...`: the form that names exactly this content.
    pub fn by_digest(&self) -> String {
        self.pinned().by_digest()
    }
}

/// `shipshape/model-server:v2` as it is named in `registry` (`HOST[/PREFIX]`).
pub fn in_registry(local: &str, registry: &str) -> String {
    format!("{}/{local}", registry.trim_end_matches('/'))
}

/// Tags a local image for `registry` and pushes it; returns its reference and digest there.
pub fn push(docker: &Docker, local: &str, registry: &str) -> Result<Pushed> {
    let reference = in_registry(local, registry);
    let log = Stages::new()?.log_path("push")?;
    docker.tag(local, &reference, &log)?;
    let digest = docker.push(&reference, &log).with_context(|| {
        format!(
            "pushing {reference} failed: is the registry running (`cargo xtask cluster up` starts the local one) and are you logged in?"
        )
    })?;
    Ok(Pushed { reference, digest })
}

/// `shipshape/model-server:<tag>`: `image` with `labels` added to its config (a release's source
/// commit), so the label travels with the image to every registry.
pub fn relabel(docker: &Docker, image: &str, tag: &str, labels: &[(&str, &str)]) -> Result<String> {
    let reference = format!("{MODEL_SERVER_REPOSITORY}:{tag}");
    let changes: Vec<String> = labels.iter().map(|(k, v)| format!("LABEL {k}={v}")).collect();
    recommit(docker, image, &reference, &changes, &Stages::new()?.log_path("model-server-release")?)?;
    Ok(reference)
}

/// `image` again as `reference` with Dockerfile-style `changes` to its config (ENV, LABEL): the
/// same layers, another config.
fn recommit(docker: &Docker, image: &str, reference: &str, changes: &[String], log: &Path) -> Result<()> {
    // Named after the target too: tests recommit several images at once from one process.
    let target: String = reference.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let container = format!("shipshape-recommit-{}-{target}", std::process::id());
    docker.create_container(&container, image, log)?;
    let committed = docker.commit(&container, reference, changes, log);
    docker.remove_container(&container);
    committed
}

/// Another version of a built model-server image, for exercising flows: `<image>-<suffix>`,
/// the same content with `env` baked in (e.g. FAULT_CRASH_ON_START=true: a version that
/// crash-loops). The chart sets APP_VERSION from the tag, so each variant reports its own version.
pub fn variant(docker: &Docker, image: &str, suffix: &str, env: &[(&str, &str)]) -> Result<String> {
    let reference = format!("{image}-{suffix}");
    let log = Stages::new()?.log_path("model-server-variants")?;
    if env.is_empty() {
        docker.tag(image, &reference, &log)?;
    } else {
        let changes: Vec<String> = env.iter().map(|(k, v)| format!("ENV {k}={v}")).collect();
        recommit(docker, image, &reference, &changes, &log)?;
    }
    Ok(reference)
}

/// Builds the model-server image and returns its reference. The tag carries the image's
/// content ID, so a changed server is a new tag and a Helm upgrade rolls it out.
pub fn build_model_server(sh: &Shell, docker: &Docker) -> Result<String> {
    // One build at a time: every build rewrites the same context directory and scratch tag, and
    // a second one beside it (`image build` while `up` builds, two end-to-end tests) emptied
    // the first's context mid-build: both got an image without its binary (StartError).
    let _held = crate::cache::hold(&crate::cache::root()?.join("images/model-server.lock"), "the model-server image")?;
    let stages = Stages::new()?;
    let log = stages.log_path("model-server-image")?;
    std::fs::write(&log, "")?;
    println!("[build]  model-server image (cargo auditable build --release; log: {})", log.display());
    // cargo auditable embeds the dependency tree in the binary: scanners read the crates there.
    let auditable = crate::tools::CARGO_AUDITABLE.find()?;
    // This build may run inside `cargo test` (end-to-end tests).
    let target_dir = crate::cargo::image_build_target_dir();
    run_logged(
        crate::cargo::without_running_crate(cmd!(
            sh,
            "{auditable} auditable build --release --locked --package model-server --target-dir {target_dir}"
        )),
        &log,
        "cargo auditable build --release -p model-server",
    )?;
    let binary = target_dir.join("release/model-server");
    let context = crate::cache::root()?.join("images/model-server-context");
    if context.exists() {
        std::fs::remove_dir_all(&context)?;
    }
    let rootfs = context.join("rootfs");
    place(&binary, &rootfs.join("usr/local/bin/model-server"))?;
    let libraries = shared_libraries(sh, &binary)?;
    for library in &libraries {
        place(library, &rootfs.join(library.strip_prefix("/")?))?;
    }
    record_system_packages(sh, &libraries, &rootfs)?;
    place(&crate::repo_root().join("server/models/iris-v1.json"), &rootfs.join("models/model.json"))?;
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n")?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    let dockerfile = crate::repo_root().join("deploy/image/model-server.Dockerfile");
    let scratch_tag = format!("{MODEL_SERVER_REPOSITORY}:build");
    docker.build(&context, &dockerfile, &scratch_tag, &log)?;
    let id = docker.image_id(&scratch_tag)?;
    let short = id.trim_start_matches("sha256:").get(..12).context("unexpected image ID")?.to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let reference = format!("{MODEL_SERVER_REPOSITORY}:{version}-{short}");
    docker.tag(&scratch_tag, &reference, &log)?;
    Ok(reference)
}

/// The Debian packages the copied libraries come from, recorded in the image as distroless
/// images record theirs (`/var/lib/dpkg/status.d/<package>`, and the host's `/etc/os-release`
/// and `/etc/debian_version` naming the release): Trivy then lists libc6 and libgcc-s1 in the
/// SBOM and matches them against Debian's advisories (`scan.rs`). On a host without dpkg the
/// libraries go unrecorded, said here and by the scan.
fn record_system_packages(sh: &Shell, libraries: &[PathBuf], rootfs: &Path) -> Result<()> {
    if !crate::host::has_dpkg(sh) {
        println!("  warning: this host has no dpkg: the image's system libraries are not listed in its SBOM nor scanned");
        return Ok(());
    }
    let mut packages = std::collections::BTreeSet::new();
    for library in libraries {
        // `dpkg -S` knows a file by the path its package installed (usrmerge: /lib, not /usr/lib),
        // and ld.so by its /lib64 link; the real file is tried when the path is not known.
        let canonical = std::fs::canonicalize(library).unwrap_or_else(|_| library.clone());
        let owner = [library, &canonical].iter().find_map(|path| read_or_explain(cmd!(sh, "dpkg -S {path}").quiet()).ok());
        match owner.as_deref().and_then(|line| line.split(':').next()) {
            Some(package) => {
                packages.insert(package.trim().to_owned());
            }
            None => println!("  warning: {} belongs to no Debian package here: it is not listed in the image's SBOM", library.display()),
        }
    }
    let status = rootfs.join("var/lib/dpkg/status.d");
    std::fs::create_dir_all(&status)?;
    let fields = "Package: ${Package}\nStatus: ${Status}\nVersion: ${Version}\nArchitecture: ${Architecture}\nSource: ${Source}\n";
    for package in &packages {
        let record = read_or_explain(cmd!(sh, "dpkg-query -W -f {fields} {package}").quiet())?;
        std::fs::write(status.join(package), record)?;
    }
    place(Path::new("/etc/os-release"), &rootfs.join("etc/os-release"))?;
    // Trivy knows a Debian image by this file, not by os-release (without it: "Unsupported os",
    // and the packages above go unscanned); distroless images carry it too.
    if Path::new("/etc/debian_version").is_file() {
        place(Path::new("/etc/debian_version"), &rootfs.join("etc/debian_version"))?;
    }
    println!(
        "  system libraries from Debian packages {} (recorded in /var/lib/dpkg/status.d for the scan)",
        Vec::from_iter(packages).join(", ")
    );
    Ok(())
}

/// The shared libraries a dynamically linked binary loads, as `ldd` resolves them here.
fn shared_libraries(sh: &Shell, binary: &Path) -> Result<Vec<PathBuf>> {
    let listing = read_or_explain(cmd!(sh, "ldd {binary}"))?;
    let mut libraries = Vec::new();
    for line in listing.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("{} needs a library this machine lacks: {line}", binary.display());
        }
    }
    Ok(libraries)
}

/// Builds the PostgreSQL image from Debian's packages unless Docker already has it.
pub fn build_postgres(sh: &Shell, docker: &Docker) -> Result<String> {
    if docker.image_exists(POSTGRES_IMAGE) {
        return Ok(POSTGRES_IMAGE.to_owned());
    }
    let mut stages = Stages::new()?;
    let rootfs = stages.get("postgres", "bookworm-15-r1", "PostgreSQL rootfs from Debian packages", |out, log| {
        let rootfs = out.join("rootfs");
        run_logged(
            cmd!(sh, "debootstrap --variant=minbase --include=postgresql,postgresql-client bookworm {rootfs} http://deb.debian.org/debian"),
            log,
            "debootstrap (PostgreSQL)",
        )?;
        // The package creates a `main` cluster we never use; the entrypoint makes its own.
        let cleanup = "rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main /var/cache/apt/archives/*.deb /var/lib/apt/lists/* \
                       && mkdir -p /var/lib/postgresql/data && chown -R postgres:postgres /var/lib/postgresql";
        run_logged(cmd!(sh, "chroot {rootfs} /bin/sh -c {cleanup}"), log, "trimming the PostgreSQL rootfs")?;
        place(&crate::repo_root().join("deploy/image/postgres-entrypoint.sh"), &rootfs.join("usr/local/bin/postgres-entrypoint"))?;
        let tarball = out.join("rootfs.tar");
        pack(sh, &rootfs, &tarball, log, "packing the PostgreSQL rootfs")?;
        std::fs::remove_dir_all(&rootfs)?;
        Ok(())
    })?;
    let log = stages.log_path("postgres-image")?;
    let changes = [
        "USER postgres".to_owned(),
        "ENV PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
        "EXPOSE 5432".to_owned(),
        // PostgreSQL's fast shutdown. On SIGTERM (smart shutdown) it waits for every client to
        // disconnect, and model-server keeps a connection open: the pod then takes the whole
        // 30 s grace period to stop. The official image sets the same.
        "STOPSIGNAL SIGINT".to_owned(),
        r#"ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]"#.to_owned(),
    ];
    docker.import(&rootfs.join("rootfs.tar"), POSTGRES_IMAGE, &changes, &log)?;
    stages.print_summary();
    Ok(POSTGRES_IMAGE.to_owned())
}

/// MLflow's tracking server (`cluster up --with mlflow`): no container image can be pulled, so
/// Debian's python3 in a debootstrapped root filesystem plus MLflow's pinned wheels from the
/// Python package index (`deploy/image/mlflow-requirements.txt`). Built once per requirements
/// file and recipe.
pub fn build_mlflow(sh: &Shell, docker: &Docker) -> Result<String> {
    let requirements = crate::repo_root().join("deploy/image/mlflow-requirements.txt");
    let pins = std::fs::read(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let key = format!("{}-{MLFLOW_RECIPE}-{}", MLFLOW_VERSION, &crate::signing::hex_sha256(&pins)[..12]);
    let reference = format!("{MLFLOW_REPOSITORY}:{key}");
    if docker.image_exists(&reference) {
        return Ok(reference);
    }
    let mut stages = Stages::new()?;
    let rootfs = stages.get("mlflow", &key, "MLflow rootfs: Debian's python3 and MLflow's pinned wheels", |out, log| {
        let rootfs = out.join("rootfs");
        run_logged(
            cmd!(sh, "debootstrap --variant=minbase --include=python3,ca-certificates bookworm {rootfs} http://deb.debian.org/debian"),
            log,
            "debootstrap (MLflow's python3)",
        )?;
        // pip from a throwaway environment of the host's python3, installing into the image's
        // tree for the image's Python (bookworm's 3.11), wheels only: nothing is compiled, and
        // nothing is installed into the host's Python.
        let pip_env = out.join("pip-env");
        run_logged(cmd!(sh, "python3 -m venv {pip_env}"), log, "python3 -m venv (Debian: the python3-venv package)")?;
        let target = rootfs.join("opt/mlflow");
        let pip = pip_env.join("bin/pip");
        run_logged(
            cmd!(
                sh,
                "{pip} install --quiet --no-input --disable-pip-version-check --no-deps --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --target {target} -r {requirements}"
            ),
            log,
            "pip install MLflow's pinned wheels",
        )?;
        let cleanup = "rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* && mkdir -p /mlflow && chown 65532:65532 /mlflow";
        run_logged(cmd!(sh, "chroot {rootfs} /bin/sh -c {cleanup}"), log, "trimming the MLflow rootfs")?;
        pack(sh, &rootfs, &out.join("rootfs.tar"), log, "packing the MLflow rootfs")?;
        std::fs::remove_dir_all(&rootfs)?;
        std::fs::remove_dir_all(&pip_env)?;
        Ok(())
    })?;
    let log = stages.log_path("mlflow-image")?;
    let changes = [
        "USER 65532:65532".to_owned(),
        "ENV PYTHONPATH=/opt/mlflow PATH=/opt/mlflow/bin:/usr/bin:/bin HOME=/mlflow".to_owned(),
        "EXPOSE 5000".to_owned(),
    ];
    docker.import(&rootfs.join("rootfs.tar"), &reference, &changes, &log)?;
    stages.print_summary();
    Ok(reference)
}
