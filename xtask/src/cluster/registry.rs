//! The local OCI registry that kind clusters pull from, set up the way kind documents its "local
//! registry": the CNCF distribution registry (v3, built from its Go module into a FROM scratch
//! image, since no registry image can be pulled here) runs as container `shipshape-registry`,
//! published on 127.0.0.1:5001 for pushes from this machine and joined to kind's Docker network
//! for pulls from the nodes; each node's containerd maps `localhost:5001` to it
//! (`certs.d/localhost:5001/hosts.toml`); the `local-registry-hosting` ConfigMap (KEP-1755)
//! tells tools where it is. Its storage is a Docker volume, so images outlive clusters.
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use xshell::Shell;

use super::docker::Docker;
use super::layout::{pack, place};
use super::stage::Stages;
use crate::go::{Go, WrapperBuild};

/// Where images are pushed from this machine, and the name the nodes pull them by.
pub const HOST: &str = "localhost:5001";
const PUBLISH: &str = "127.0.0.1:5001:5000";
pub const CONTAINER: &str = "shipshape-registry";
/// The registry on kind's Docker network, where the nodes (and pods, through the nodes' DNS)
/// reach it by container name.
pub const IN_KIND_NETWORK: &str = "shipshape-registry:5000";
const VOLUME: &str = "shipshape-registry-data";
/// distribution v3.1.2: the module proxy serves it with no replace directives.
const VERSION: &str = "v3.1.2";
const MODULE: &str = "github.com/distribution/distribution/v3";
/// The storage drivers left out. Upstream's registry command imports every driver it has; three
/// bring a cloud SDK (Azure, Google Cloud Storage, S3 and CloudFront): 964 packages to compile
/// instead of 550. The local registry stores on its volume's filesystem. Only the command's
/// import list is rewritten, in a copy of the module, and the image's tag says so.
const CLOUD_DRIVERS: &[&str] =
    &["storage/driver/azure", "storage/driver/gcs", "storage/driver/middleware/cloudfront", "storage/driver/s3-aws"];
const FLAVOUR: &str = "filesystem-only";
/// kind's Docker network: the nodes reach the registry there by container name.
const KIND_NETWORK: &str = "kind";
const START_TIMEOUT: Duration = Duration::from_secs(30);

const CONFIG: &str = "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
";

fn image() -> String {
    format!("shipshape/registry:{VERSION}-{FLAVOUR}")
}

/// cmd/registry/main.go without the cloud drivers' imports; fails if one is not there (a new
/// version's recipe must be looked at, not silently keep a driver).
fn without_cloud_drivers(main_go: &str) -> Result<String> {
    let mut kept = main_go.to_owned();
    for driver in CLOUD_DRIVERS {
        let import = format!("\t_ \"{MODULE}/registry/{driver}\"\n");
        anyhow::ensure!(kept.contains(&import), "cmd/registry/main.go of {VERSION} does not import {driver}: the recipe needs updating");
        kept = kept.replace(&import, "");
    }
    Ok(kept)
}

/// The registry image, built once per version.
fn registry_image(sh: &Shell, docker: &Docker) -> Result<String> {
    let image = image();
    if docker.image_exists(&image) {
        return Ok(image);
    }
    let mut stages = Stages::new()?;
    let flavoured = format!("{VERSION}-{FLAVOUR}");
    let built = stages.get("registry", &flavoured, "the distribution registry from its Go module (filesystem storage)", |out, log| {
        let go = Go::detect(sh);
        let source = go.download(&format!("{MODULE}@{VERSION}"))?;
        let main_go = std::fs::read_to_string(source.dir.join("cmd/registry/main.go")).context("reading cmd/registry/main.go")?;
        let trimmed = super::go_image::patched_copy(
            &source.dir,
            &format!("distribution-{flavoured}"),
            &[("cmd/registry/main.go", without_cloud_drivers(&main_go)?)],
            &[],
        )?;
        let build = WrapperBuild {
            go_mod_extra: format!("replace {MODULE} => {}", trimmed.display()),
            sums_from: Some(source.dir.join("go.sum")),
            ..WrapperBuild::new(MODULE, VERSION, &[format!("{MODULE}/cmd/registry")])
        };
        go.build_in_wrapper(&build, out, log)?;
        let rootfs = out.join("rootfs");
        place(&out.join("registry"), &rootfs.join("usr/local/bin/registry"))?;
        std::fs::create_dir_all(rootfs.join("etc/distribution"))?;
        std::fs::write(rootfs.join("etc/distribution/config.yml"), CONFIG)?;
        std::fs::create_dir_all(rootfs.join("var/lib/registry"))?;
        std::fs::create_dir_all(rootfs.join("tmp"))?;
        pack(sh, &rootfs, &out.join("rootfs.tar"), log, "packing the registry image")?;
        std::fs::remove_dir_all(&rootfs)?;
        Ok(())
    })?;
    let log = stages.log_path("registry-image")?;
    let changes = [
        r#"ENTRYPOINT ["/usr/local/bin/registry", "serve", "/etc/distribution/config.yml"]"#.to_owned(),
        "EXPOSE 5000".to_owned(),
        r#"VOLUME ["/var/lib/registry"]"#.to_owned(),
    ];
    docker.import(&built.join("rootfs.tar"), &image, &changes, &log)?;
    Ok(image)
}

/// Starts the registry unless it runs this version (idempotent), and waits until it answers.
pub fn ensure_running(sh: &Shell, docker: &Docker) -> Result<()> {
    let current = docker.container(CONTAINER)?;
    let up_to_date = current.as_ref().is_some_and(|c| c.image == image());
    if !(up_to_date && docker.is_running(CONTAINER)) {
        let image = registry_image(sh, docker)?;
        match current {
            Some(existing) if existing.image == image => {
                println!("starting the local registry {CONTAINER}");
                docker.start(CONTAINER)?;
            }
            existing => {
                if let Some(existing) = existing {
                    // Another version's container, running or not: replaced; the images stay
                    // in the volume, so nothing pushed is lost.
                    println!("replacing the local registry's {} with {image}", existing.image);
                    docker.remove_container(CONTAINER);
                }
                println!("starting the local registry {CONTAINER} ({image}, {HOST}, images kept in volume {VOLUME})");
                docker.run_service(CONTAINER, &image, PUBLISH, &format!("{VOLUME}:/var/lib/registry"))?;
            }
        }
    }
    let started = Instant::now();
    loop {
        match answers() {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() > START_TIMEOUT => {
                bail!("the local registry does not answer on {HOST} after {START_TIMEOUT:?} ({err:#}): `docker logs {CONTAINER}` says why")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `GET /v2/` answers 200: the registry serves the distribution API.
fn answers() -> Result<()> {
    let mut stream = std::net::TcpStream::connect_timeout(&"127.0.0.1:5001".parse()?, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost:5001\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let status = String::from_utf8_lossy(&head);
    if !status.starts_with("HTTP/1.") || !status.ends_with("200") {
        bail!("GET /v2/ answered {status:?}");
    }
    Ok(())
}

/// Lets cluster `name` pull from the registry: the registry joins kind's network, each node's
/// containerd maps localhost:5001 to it, and the ConfigMap advertises it. Idempotent.
pub fn attach(docker: &Docker, nodes: &[String], api: &crate::k8s::Connection) -> Result<()> {
    docker.network_connect(KIND_NETWORK, CONTAINER)?;
    let log = Stages::new()?.log_path("registry-attach")?;
    let hosts = format!("[host.\"http://{IN_KIND_NETWORK}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
    let script = format!("mkdir -p /etc/containerd/certs.d/{HOST} && printf '%s' '{hosts}' > /etc/containerd/certs.d/{HOST}/hosts.toml");
    for node in nodes {
        // containerd reads certs.d only when its config says so (deploy/kind/cluster.yaml).
        if docker.exec(node, "grep -q 'config_path.*/etc/containerd/certs.d' /etc/containerd/config.toml", &log).is_err() {
            bail!(
                "node {node} was created before shipshape pulled through a registry (its containerd has no certs.d config_path): \
                 recreate the cluster with `cargo xtask cluster down` then `cargo xtask up`"
            );
        }
        docker.exec(node, &script, &log).with_context(|| format!("pointing node {node}'s containerd at the local registry"))?;
    }
    api.run(async {
        let client = api.client().clone();
        let config_map: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": format!("host: \"{HOST}\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n")}
        }))?;
        Api::<ConfigMap>::namespaced(client, "kube-public")
            .patch("local-registry-hosting", &PatchParams::apply("shipshape").force(), &Patch::Apply(&config_map))
            .await
            .context("writing ConfigMap kube-public/local-registry-hosting")?;
        anyhow::Ok(())
    })
}

/// Stops and removes the registry and, with it, every image pushed to it.
pub fn remove(docker: &Docker) {
    docker.remove_container(CONTAINER);
    docker.remove_volume(VOLUME);
    println!("removed the local registry {CONTAINER} and its images (volume {VOLUME})");
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_cloud_drivers_imports_are_removed() {
        let main_go = "import (\n\t\"github.com/distribution/distribution/v3/registry\"\n\
            \t_ \"github.com/distribution/distribution/v3/registry/storage/driver/azure\"\n\
            \t_ \"github.com/distribution/distribution/v3/registry/storage/driver/filesystem\"\n\
            \t_ \"github.com/distribution/distribution/v3/registry/storage/driver/gcs\"\n\
            \t_ \"github.com/distribution/distribution/v3/registry/storage/driver/middleware/cloudfront\"\n\
            \t_ \"github.com/distribution/distribution/v3/registry/storage/driver/s3-aws\"\n)\n";
        let kept = super::without_cloud_drivers(main_go).unwrap();
        assert!(kept.contains("driver/filesystem") && kept.contains("v3/registry\"\n"), "{kept}");
        assert!(!kept.contains("azure") && !kept.contains("gcs") && !kept.contains("cloudfront") && !kept.contains("s3-aws"), "{kept}");
        // A version that no longer imports one of them is refused, not built unlooked-at.
        assert!(super::without_cloud_drivers("import ()\n").is_err());
    }
}
