//! Bad input and faults around clusters: each gets one clear error naming what failed and what
//! to do. No cluster is created here.
use std::process::Command;

use xtask::cluster::lifecycle::{ClusterTarget, ClusterUp};
use xtask::cluster::{docker::Docker, lifecycle};

fn up(name: &str) -> String {
    let sh = xtask::repo_shell().unwrap();
    let target =
        ClusterTarget { name: name.to_owned(), kubeconfig: Some(std::env::temp_dir().join(format!("{name}.kubeconfig"))), context: None };
    match lifecycle::up(&sh, &ClusterUp { target, keep: false, with: Vec::new(), ..Default::default() }) {
        Ok(_) => panic!("cluster {name} came up, but it should have been refused"),
        Err(err) => format!("{err:#}"),
    }
}

#[test]
fn a_name_taken_by_another_container_is_refused() {
    let name = format!("shipshape-e2e-taken-{}", std::process::id());
    let container = format!("{name}-control-plane");
    // A container that merely has the node's name (created, never started).
    let created = Command::new("docker")
        .args(["create", "--name", &container, "--entrypoint", "true", xtask::cluster::app_images::POSTGRES_IMAGE])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let message = up(&name);
    let _ = Command::new("docker").args(["rm", "--force", &container]).output();
    assert!(message.contains("is taken") && message.contains("choose another --name"), "{message}");
}

#[test]
fn invalid_cluster_names_are_refused_before_anything_runs() {
    let message = up("Not_A_Valid_Name");
    assert!(message.contains("is not valid"), "{message}");
}

#[test]
fn a_missing_docker_engine_is_explained() {
    let sh = xtask::repo_shell().unwrap();
    sh.set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let message = match Docker::connect(&sh) {
        Ok(_) => panic!("connected to a Docker engine that does not exist"),
        Err(err) => format!("{err:#}"),
    };
    assert!(message.contains("no Docker engine answers") && message.contains("cargo xtask up"), "{message}");
}
