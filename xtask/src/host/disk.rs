//! Free disk space, checked before a long run starts. A build that fills a disk fails far from
//! its cause: in CI, `no space left on device` surfaced as 30 failed end-to-end tests, each
//! saying only that a compile failed.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;

const GB: u64 = 1_000_000_000;

/// Something a run writes, where, and about how much (measured: docs/benchmarks.md).
struct Room {
    what: &'static str,
    path: PathBuf,
    bytes: u64,
}

impl Room {
    fn gigabytes(what: &'static str, path: PathBuf, gigabytes: f64) -> Room {
        Room { what, path, bytes: (gigabytes * GB as f64) as u64 }
    }
}

/// What a set-up writes, in gigabytes, cold (nothing built yet) and warm (the node image and
/// tools cached). Measured: a cold `.ci/run` with empty caches, a warm one from a fresh clone
/// (docs/benchmarks.md), rounded up.
struct Written {
    cold: f64,
    warm: f64,
}
/// The node image, etcd and CoreDNS stages, the tools, the operators' sources (3.8 GB on a
/// fresh machine, 2026-12-06).
const SHIPSHAPE_CACHE: Written = Written { cold: 4.0, warm: 0.2 };
/// Kubernetes, helm, cosign, Trivy and the operators compiled (GOCACHE: 11.8 GB)...
const GO_BUILD_CACHE: Written = Written { cold: 12.5, warm: 0.5 };
/// ...and their modules (GOMODCACHE: 9.8 GB; Trivy's alone 2.7 GB). A fresh machine's run with
/// the older figures (10 and 7 GB) passed this check with 31 GB free and ran out of disk at 33
/// minutes, in the model-server build.
const GO_MODULES: Written = Written { cold: 10.0, warm: 0.1 };
/// The node and base images, the operators' and the service's images, the registry's volume,
/// and one kind node's writable layer.
const DOCKER: Written = Written { cold: 7.0, warm: 3.0 };
/// A fresh clone's `target/` after the suite: the workspace's tests, the e2e xtask binary and
/// the release model-server.
const SUITE_TARGET: f64 = 4.0;

/// Fails before anything is built when the disks lack what a set-up will write: the cache, Go's
/// caches and Docker's images, and, for the suite, the target directory.
pub fn require_room_for_setup(sh: &Shell, docker: &crate::cluster::docker::Docker, suite: bool, purpose: &str) -> Result<()> {
    let cold = crate::cluster::node_image::built_kubectl()?.is_none();
    let size = |written: Written| if cold { written.cold } else { written.warm };
    let (go_build, go_modules) = crate::go::Go::detect(sh).caches()?;
    let mut rooms = vec![
        Room::gigabytes("shipshape's cache", crate::cache::root()?, size(SHIPSHAPE_CACHE)),
        Room::gigabytes("Go's build cache", go_build, size(GO_BUILD_CACHE)),
        Room::gigabytes("Go's modules", go_modules, size(GO_MODULES)),
        Room::gigabytes("Docker's images and volumes", docker.root_dir()?, size(DOCKER)),
    ];
    if suite {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join("target"));
        let built = crate::cargo::image_build_target_dir().exists();
        rooms.push(Room::gigabytes("the target directory", target, if built { 1.0 } else { SUITE_TARGET }));
    }
    require_room(sh, &rooms, purpose)
}

/// A filesystem as `df` names it: where it is mounted and what it has free.
#[derive(Debug, PartialEq)]
struct Filesystem {
    mounted_on: String,
    available: u64,
}

/// Fails, before anything is written, when a filesystem lacks the room that `rooms` will take
/// on it (summed per filesystem: the cache, Go's caches, Docker's images and the target
/// directory are often one disk). The error says where, how much, and what to do.
fn require_room(sh: &Shell, rooms: &[Room], purpose: &str) -> Result<()> {
    let placed: Vec<(Filesystem, &Room)> = rooms.iter().map(|room| Ok((filesystem_of(sh, &room.path)?, room))).collect::<Result<_>>()?;
    let short = shortfalls(&placed);
    if short.is_empty() {
        return Ok(());
    }
    bail!(
        "not enough free disk space for {purpose}:\n  {}\nfree space there (`docker system prune` for old images, `cargo clean`, \
         `cargo xtask cluster down` for clusters you no longer use), or move the caches to a disk with room \
         (SHIPSHAPE_CACHE, GOCACHE, GOMODCACHE), then rerun",
        short.join("\n  ")
    )
}

/// One line per filesystem whose free space is below what is asked of it.
fn shortfalls(placed: &[(Filesystem, &Room)]) -> Vec<String> {
    let mut by_mount: BTreeMap<&str, (u64, u64, Vec<String>)> = BTreeMap::new();
    for (fs, room) in placed {
        let entry = by_mount.entry(&fs.mounted_on).or_insert((fs.available, 0, Vec::new()));
        entry.1 += room.bytes;
        entry.2.push(format!("{} {}", room.what, shown(room.bytes)));
    }
    by_mount
        .into_iter()
        .filter(|(_, (available, needed, _))| available < needed)
        .map(|(mount, (available, needed, whats))| {
            format!("{mount} has {} free; about {} is needed there ({})", shown(available), shown(needed), whats.join(", "))
        })
        .collect()
}

fn shown(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / GB as f64)
}

/// The filesystem `path` is on, or would be on: its nearest existing ancestor's.
fn filesystem_of(sh: &Shell, path: &Path) -> Result<Filesystem> {
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let out = read_or_explain(cmd!(sh, "df -P -B1 {existing}"))?;
    parse_df(&out).with_context(|| format!("could not read `df -P -B1 {}`: {out}", existing.display()))
}

/// `df -P`'s second line: device, size, used, available, capacity, mount point (which may hold spaces).
fn parse_df(out: &str) -> Option<Filesystem> {
    let line = out.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let available = fields.get(3)?.parse().ok()?;
    let mounted_on = fields.get(5..)?.join(" ");
    (!mounted_on.is_empty()).then_some(Filesystem { mounted_on, available })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_posix_output_is_read_including_a_mount_point_with_spaces() {
        let out = "Filesystem     1-blocks        Used   Available Capacity Mounted on\n\
                   /dev/vda   270582939648 94489280512 4080218112      96% /mnt/big disk\n";
        assert_eq!(parse_df(out), Some(Filesystem { mounted_on: "/mnt/big disk".into(), available: 4080218112 }));
        assert_eq!(parse_df("Filesystem 1-blocks\n"), None);
    }

    #[test]
    fn rooms_on_one_filesystem_are_summed_and_a_shortfall_names_each() {
        let fs = |mount: &str, gb: u64| Filesystem { mounted_on: mount.into(), available: gb * GB };
        let cache = Room::gigabytes("the cache", "/c".into(), 3.0);
        let images = Room::gigabytes("Docker's images", "/d".into(), 2.0);
        // 4 GB free, 3 + 2 asked of the same disk: short, though each alone would fit.
        let short = shortfalls(&[(fs("/", 4), &cache), (fs("/", 4), &images)]);
        assert_eq!(short, ["/ has 4.0 GB free; about 5.0 GB is needed there (the cache 3.0 GB, Docker's images 2.0 GB)"]);
        // On two disks each fits.
        assert!(shortfalls(&[(fs("/", 4), &cache), (fs("/var", 4), &images)]).is_empty());
    }
}
