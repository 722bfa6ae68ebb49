//! Every docker call shipshape makes (kind makes its own, through the same engine).
use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::{read_or_explain, run_logged};

pub struct Docker<'a> {
    sh: &'a Shell,
}

impl<'a> Docker<'a> {
    /// The Docker engine, or the error that says how to get one.
    pub fn connect(sh: &'a Shell) -> Result<Docker<'a>> {
        let format = "{{.Server.Version}}";
        match read_or_explain(cmd!(sh, "docker version --format {format}")) {
            Ok(version) => {
                let major: u32 = version.trim().split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
                if major < crate::host::DOCKER_MIN_MAJOR {
                    bail!(
                        "Docker engine {} is too old for kind here: Docker < {} cannot run privileged containers \
                         on machines whose capability set lacks CAP_SYS_RESOURCE (moby#42906). Upgrade it, or stop it \
                         and let `cargo xtask up` set up an engine",
                        version.trim(),
                        crate::host::DOCKER_MIN_MAJOR
                    );
                }
                Ok(Docker { sh })
            }
            Err(err) => bail!(
                "no Docker engine answers ({}): kind runs each node as a privileged Docker container. \
                 `cargo xtask up` and `cargo xtask test` set one up (on Debian and Ubuntu, installing only what is missing)",
                first_line(&format!("{err:#}"))
            ),
        }
    }

    /// Where the engine keeps images, containers and volumes.
    pub fn root_dir(&self) -> Result<std::path::PathBuf> {
        let format = "{{.DockerRootDir}}";
        Ok(read_or_explain(cmd!(self.sh, "docker info --format {format}"))?.trim().into())
    }

    pub fn image_exists(&self, image: &str) -> bool {
        self.image_id(image).is_ok()
    }

    pub fn image_id(&self, image: &str) -> Result<String> {
        let format = "{{.Id}}";
        Ok(read_or_explain(cmd!(self.sh, "docker image inspect --format {format} {image}"))?.trim().to_owned())
    }

    /// Tries to pull `image`; `Err` holds Docker's reason (offline machines fail at once).
    pub fn try_pull(&self, image: &str) -> Result<(), String> {
        read_or_explain(cmd!(self.sh, "docker pull --quiet {image}")).map(drop).map_err(|e| first_line(&format!("{e:#}")))
    }

    /// `docker import`: an image from a root filesystem tarball, with Dockerfile-style `changes`.
    pub fn import(&self, tarball: &Path, tag: &str, changes: &[String], log: &Path) -> Result<()> {
        let change_args = change_args(changes);
        run_logged(cmd!(self.sh, "docker import {change_args...} {tarball} {tag}"), log, &format!("docker import {tag}"))
    }

    /// `docker save`: the archive format `ctr images import` and `kind load` read.
    pub fn save_tags(&self, tags: &[&str], out: &Path, log: &Path) -> Result<()> {
        run_logged(cmd!(self.sh, "docker save --output {out} {tags...}"), log, &format!("docker save {}", tags.join(" ")))
    }

    /// `docker load`: the images of a `docker save` archive, under the tags it holds.
    pub fn load(&self, archive: &Path, log: &Path) -> Result<()> {
        run_logged(cmd!(self.sh, "docker load --input {archive}"), log, &format!("docker load {}", archive.display()))
    }

    pub fn tag(&self, source: &str, target: &str, log: &Path) -> Result<()> {
        run_logged(cmd!(self.sh, "docker tag {source} {target}"), log, &format!("docker tag {target}"))
    }

    pub fn build(&self, context: &Path, dockerfile: &Path, tag: &str, log: &Path) -> Result<()> {
        run_logged(cmd!(self.sh, "docker build --file {dockerfile} --tag {tag} {context}"), log, &format!("docker build {tag}"))
    }

    /// Creates (does not start) a container from `image`, to commit a changed image from it.
    pub fn create_container(&self, name: &str, image: &str, log: &Path) -> Result<()> {
        self.remove_container(name);
        run_logged(cmd!(self.sh, "docker create --name {name} {image}"), log, &format!("docker create {name}"))
    }

    /// Starts a long-lived container that only sleeps, to copy into and exec in.
    pub fn start_sleeper(&self, name: &str, image: &str, log: &Path) -> Result<()> {
        self.remove_container(name);
        run_logged(
            cmd!(self.sh, "docker run --detach --name {name} --entrypoint sleep --security-opt seccomp=unconfined {image} infinity"),
            log,
            &format!("starting build container {name}"),
        )
    }

    pub fn exec(&self, container: &str, script: &str, log: &Path) -> Result<()> {
        run_logged(cmd!(self.sh, "docker exec {container} sh -c {script}"), log, &format!("in {container}: {script}"))
    }

    pub fn exec_detached(&self, container: &str, script: &str) -> Result<()> {
        read_or_explain(cmd!(self.sh, "docker exec --detach {container} sh -c {script}"))?;
        Ok(())
    }

    pub fn copy_into(&self, from: &Path, container: &str, to: &str, log: &Path) -> Result<()> {
        let target = format!("{container}:{to}");
        run_logged(cmd!(self.sh, "docker cp {from} {target}"), log, &format!("docker cp {} {target}", from.display()))
    }

    pub fn commit(&self, container: &str, tag: &str, changes: &[String], log: &Path) -> Result<()> {
        let change_args = change_args(changes);
        run_logged(cmd!(self.sh, "docker commit {change_args...} {container} {tag}"), log, &format!("docker commit {tag}"))
    }

    /// The container's address on a Docker network (a kind node's on `kind`).
    pub fn address_on(&self, container: &str, network: &str) -> Result<String> {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        let address = read_or_explain(cmd!(self.sh, "docker container inspect --format {format} {container}"))?.trim().to_owned();
        if address.is_empty() || address == "<no value>" {
            bail!("container {container} has no address on Docker network {network}");
        }
        Ok(address)
    }

    /// Whether container `name` exists and runs.
    pub fn is_running(&self, name: &str) -> bool {
        let format = "{{.State.Running}}";
        read_or_explain(cmd!(self.sh, "docker container inspect --format {format} {name}")).is_ok_and(|out| out.trim() == "true")
    }

    /// Starts a stopped container.
    pub fn start(&self, name: &str) -> Result<()> {
        read_or_explain(cmd!(self.sh, "docker start {name}"))?;
        Ok(())
    }

    /// A long-running service container: restarted with the engine, `publish` as
    /// `host_ip:host_port:container_port`, `volume` as `name:/path` (a named volume outlives it).
    pub fn run_service(&self, name: &str, image: &str, publish: &str, volume: &str) -> Result<()> {
        read_or_explain(cmd!(self.sh, "docker run --detach --restart=always --name {name} --publish {publish} --volume {volume} {image}"))
            .with_context(|| format!("starting container {name}"))?;
        Ok(())
    }

    /// Connects a container to a network; already connected is not an error.
    pub fn network_connect(&self, network: &str, container: &str) -> Result<()> {
        match read_or_explain(cmd!(self.sh, "docker network connect {network} {container}")) {
            Ok(_) => Ok(()),
            Err(err) if format!("{err:#}").contains("already exists") => Ok(()),
            Err(err) => Err(err.context(format!("connecting {container} to Docker network {network}"))),
        }
    }

    /// Pushes `reference` (`repository:tag`) to its registry; returns the digest it has there.
    pub fn push(&self, reference: &str, log: &Path) -> Result<String> {
        run_logged(cmd!(self.sh, "docker push {reference}"), log, &format!("docker push {reference}"))?;
        let repository = reference.rsplit_once(':').map(|(r, _)| r).unwrap_or(reference);
        let format = "{{range .RepoDigests}}{{println .}}{{end}}";
        let digests = read_or_explain(cmd!(self.sh, "docker image inspect --format {format} {reference}"))?;
        digests
            .lines()
            .find_map(|line| line.strip_prefix(repository).and_then(|rest| rest.strip_prefix('@')))
            .map(str::to_owned)
            .with_context(|| format!("docker pushed {reference} but reports no digest for {repository}"))
    }

    /// Removes a named volume; a volume that does not exist is not an error.
    pub fn remove_volume(&self, name: &str) {
        let _ = cmd!(self.sh, "docker volume rm --force {name}").quiet().ignore_stdout().ignore_stderr().run();
    }

    /// Removing a container that does not exist is not an error.
    pub fn remove_container(&self, name: &str) {
        let _ = cmd!(self.sh, "docker rm --force --volumes {name}").quiet().ignore_stdout().ignore_stderr().run();
    }

    /// The image a container runs and its labels, if the container exists.
    pub fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let format = "{{.Config.Image}}|{{index .Config.Labels \"io.x-k8s.kind.cluster\"}}";
        match cmd!(self.sh, "docker container inspect --format {format} {name}").quiet().ignore_status().output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let (image, cluster) = text.trim().split_once('|').context("unexpected docker inspect output")?;
                Ok(Some(ContainerInfo { image: image.to_owned(), kind_cluster: Some(cluster.to_owned()).filter(|c| !c.is_empty()) }))
            }
            _ => Ok(None),
        }
    }
}

pub struct ContainerInfo {
    pub image: String,
    /// The kind cluster the container is a node of (its `io.x-k8s.kind.cluster` label).
    pub kind_cluster: Option<String>,
}

/// Dockerfile-style instructions (`ENTRYPOINT [...]`, `ENV K=V`) as `--change` arguments.
fn change_args(changes: &[String]) -> Vec<String> {
    changes.iter().flat_map(|c| ["--change".to_owned(), c.clone()]).collect()
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('`')).unwrap_or(text).trim().to_owned()
}
