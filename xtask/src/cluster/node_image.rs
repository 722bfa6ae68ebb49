//! The kind node image. kindest/node at the pinned Kubernetes version when Docker has it or can
//! pull it; otherwise built here from Debian packages and Go modules, as kind's own
//! `build node-image` does (kind's `pkg/build/nodeimage`), but with every input local:
//!
//! | stage    | output                                                                      |
//! |----------|-----------------------------------------------------------------------------|
//! | rootfs   | debootstrap'd Debian (systemd, containerd, runc, CNI plugins) + kind's base files |
//! | kube     | kubeadm, kubelet, kubectl and the control-plane binaries, from k8s.io/kubernetes |
//! | etcd, coredns | the versions the built kubeadm asks for, from their Go modules |
//! | pause    | the sandbox binary, compiled from k8s.io/kubernetes' pause.c                |
//! | images   | one `docker save` archive per image, under the exact tags kubeadm lists     |
//! | node     | the node image: rootfs + binaries, every image pre-imported into containerd |
//!
//! Not in the local image: crictl (the module proxy serves no version of cri-tools). kind uses
//! it only to skip loading an image a node already has, and in `kind export logs`; without it
//! `kind load` imports the image again, which is correct, just not skipped.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::docker::Docker;
use super::layout::{pack, place};
use super::stage::Stages;
use crate::go::{Go, WrapperBuild};
use crate::process::{read_or_explain, run_logged};

/// The Kubernetes version of every cluster: kind v0.30.0's own node version, so a pulled
/// kindest/node and a locally built node are the same Kubernetes. It is also the newest that
/// runs on a cgroup v1 host without `failCgroupV1: false` (1.35 refuses cgroup v1 by default).
pub const KUBERNETES_VERSION: &str = "v1.34.0";
/// kind v0.30.0's published image for that version (by digest, as kind pins it).
pub const KINDEST_NODE: &str = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a";
/// The tag a locally built node image gets.
pub const LOCAL_NODE_IMAGE: &str = "shipshape/kind-node:v1.34.0-r1";
/// Bump when a recipe below changes, so no stage of an older recipe is reused.
const RECIPE: &str = "r1";

const KIND_MODULE: &str = "sigs.k8s.io/kind@v0.30.0";
const DEBIAN_SUITE: &str = "bookworm";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// kind's base image packages (images/base/Dockerfile) that a single-node, rootful cluster
/// uses, plus Debian's containerd, runc and CNI plugins in place of kind's source builds, and
/// busybox-static for the kube-proxy image's iptables mode detection.
const DEBIAN_PACKAGES: &[&str] = &[
    "systemd",
    "dbus",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
];
/// Go >= 1.24: Kubernetes 1.34's go.mod.
const GO_MIN: (u32, u32) = (1, 24);
/// Disk a cold build needs: rootfs, Go module and build caches, images, the node image.
const DISK_NEEDED_GB: u64 = 15;

/// A node's pod network: a static CNI config (ptp + host-local + portmap, the shape kindnetd
/// writes), so no kindnetd image is needed. The cluster config sets `disableDefaultCNI: true` to
/// match. The image carries the first node's; each further node of a cluster gets its own range
/// (cluster/pod_network.rs).
pub fn cni_config(subnet: &str) -> String {
    CNI_CONFIG.replace("10.244.0.0/24", subnet)
}

/// The CNI config file the node image carries (and a node of several overrides).
pub const CNI_CONFIG_PATH: &str = "/etc/cni/net.d/10-shipshape.conflist";

const CNI_CONFIG: &str = r#"{
  "cniVersion": "0.4.0",
  "name": "shipshape",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "10.244.0.0/24" }]]
      },
      "mtu": 1500
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
"#;

/// The key of the stages whose inputs are the Kubernetes version and the recipe (kube, pause,
/// images, node; the `node` stage itself is only a marker that LOCAL_NODE_IMAGE was built).
fn kube_recipe_key() -> String {
    format!("{KUBERNETES_VERSION}-{RECIPE}")
}

/// The node image to create clusters with, building it when neither Docker nor a registry has
/// kindest/node. Returns the image reference.
pub fn ensure(sh: &Shell, docker: &Docker) -> Result<String> {
    if docker.image_exists(KINDEST_NODE) {
        return Ok(KINDEST_NODE.to_owned());
    }
    let mut stages = Stages::new()?;
    if stages.is_done("node", &kube_recipe_key()) && docker.image_exists(LOCAL_NODE_IMAGE) {
        return Ok(LOCAL_NODE_IMAGE.to_owned());
    }
    match docker.try_pull(KINDEST_NODE) {
        Ok(()) => return Ok(KINDEST_NODE.to_owned()),
        Err(why) => println!("kindest/node is not available ({why}): building the node image locally"),
    }
    let result = build(sh, docker, &mut stages);
    stages.print_summary();
    result
}

/// Builds (or finds in the stage cache) the local node image.
pub fn build(sh: &Shell, docker: &Docker, stages: &mut Stages) -> Result<String> {
    preflight(sh)?;
    let go = Go::detect(sh);
    go.require(GO_MIN, "building the kind node image")?;
    let kind = go.download(KIND_MODULE).context("fetching kind's module (its base image files)")?;
    let kubernetes = go.download(&format!("k8s.io/kubernetes@{KUBERNETES_VERSION}"))?;

    // debootstrap mostly downloads and unpacks while the Kubernetes build keeps both cores busy:
    // the two run side by side (each its own stage, log and progress lines).
    let (rootfs, kube) = std::thread::scope(|scope| {
        let rootfs = scope.spawn(|| -> Result<(PathBuf, Stages)> {
            let (sh, mut own) = (Shell::new()?, Stages::new()?);
            let key = format!("{DEBIAN_SUITE}-kind-v0.30.0-{RECIPE}");
            let dir = own.get("rootfs", &key, "Debian rootfs with kind's base files", |out, log| build_rootfs(&sh, &kind.dir, out, log))?;
            Ok((dir, own))
        });
        let kube = stages.get(
            "kube",
            &kube_recipe_key(),
            "Kubernetes binaries from k8s.io/kubernetes (cold: about 6 min on 2 cores)",
            |out, log| build_kubernetes(&go, &kubernetes.go_mod, out, log),
        );
        (rootfs.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the rootfs build panicked"))), kube)
    });
    let (rootfs, built_beside) = rootfs?;
    stages.absorb(built_beside);
    let kube = kube?;
    let images = KubeadmImages::list(sh, &kube.join("kubeadm"))?;
    let etcd_version = images.etcd_module_version()?;
    let etcd = stages.get("etcd", &etcd_version, "etcd server from its Go module", |out, log| build_etcd(&go, &etcd_version, out, log))?;
    let coredns_version = images.tag_of("coredns")?;
    let coredns_key = format!("{coredns_version}-{COREDNS_FLAVOUR}");
    let coredns = stages.get("coredns", &coredns_key, "CoreDNS from its Go module (without cloud DNS plugins)", |out, log| {
        build_coredns(&go, &coredns_version, out, log)
    })?;
    let pause = stages.get("pause", &kube_recipe_key(), "the pause binary from Kubernetes' pause.c", |out, log| {
        build_pause(sh, &kubernetes.dir, out, log)
    })?;
    let archives = stages.get("images", &kube_recipe_key(), "control-plane, etcd, CoreDNS and pause images", |out, log| {
        let bins = ImageBinaries { kube: &kube, etcd: &etcd, coredns: &coredns, pause: &pause, rootfs: &rootfs.join("rootfs") };
        build_images(sh, docker, &images, &bins, out, log)
    })?;
    if !docker.image_exists(LOCAL_NODE_IMAGE) {
        // The stage is only a marker; the image itself lives in Docker and may have been pruned.
        stages.forget("node", &kube_recipe_key())?;
    }
    stages.get("node", &kube_recipe_key(), &format!("node image {LOCAL_NODE_IMAGE}"), |out, log| {
        assemble_node(sh, docker, &rootfs.join("rootfs"), &kube, &archives, out, log)
    })?;
    Ok(LOCAL_NODE_IMAGE.to_owned())
}

/// What would fail half-way through a 20-minute build, checked before it starts.
fn preflight(sh: &Shell) -> Result<()> {
    if !crate::host::is_root(sh)? {
        bail!("building the node image needs root (debootstrap, chroot): run as root, or on a machine that can pull {KINDEST_NODE}");
    }
    crate::host::require(sh, &crate::host::NODE_IMAGE_BUILD, "building the kind node image")?;
    let cache = crate::cache::root()?;
    std::fs::create_dir_all(&cache)?;
    let df = read_or_explain(cmd!(sh, "df -Pk {cache}"))?;
    let free_kb: u64 = df.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    if free_kb < DISK_NEEDED_GB * 1024 * 1024 {
        bail!(
            "only {:.1} GB free under {}: a cold node image build needs about {DISK_NEEDED_GB} GB. Free space, or point SHIPSHAPE_CACHE at a larger disk",
            free_kb as f64 / 1024.0 / 1024.0,
            cache.display()
        );
    }
    Ok(())
}

fn build_rootfs(sh: &Shell, kind_module: &Path, out: &Path, log: &Path) -> Result<()> {
    let rootfs = out.join("rootfs");
    let include = format!("--include={}", DEBIAN_PACKAGES.join(","));
    run_logged(
        cmd!(sh, "debootstrap --variant=minbase {include} {DEBIAN_SUITE} {rootfs} {DEBIAN_MIRROR}"),
        log,
        "debootstrap (Debian packages)",
    )?;
    copy_kind_base_files(&kind_module.join("images/base/files"), &rootfs)?;
    std::fs::create_dir_all(rootfs.join("etc/cni/net.d"))?;
    std::fs::write(rootfs.join(CNI_CONFIG_PATH.trim_start_matches('/')), CNI_CONFIG)?;
    // What kind's Dockerfile does after installing packages, adapted to Debian's packaging:
    // containerd is /usr/bin/containerd (kind's unit runs /usr/local/bin/containerd) and the
    // CNI plugins live in /usr/lib/cni (kind looks in /opt/cni/bin).
    let setup = r#"set -eu
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo ReadKMsg=no >> /etc/systemd/journald.conf
ln -sf /lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni/bin
ln -sf /usr/bin/containerd /usr/local/bin/containerd
cp -a /usr/lib/cni/. /opt/cni/bin/
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
"#;
    run_logged(cmd!(sh, "chroot {rootfs} /bin/sh -c {setup}"), log, "configuring the rootfs (systemd units, containerd, CNI)")?;
    Ok(())
}

/// kind's `images/base/files`, with the modes its Dockerfile gives them (files in the module
/// cache are read-only and lose their exec bit).
fn copy_kind_base_files(from: &Path, rootfs: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path, base: &Path, rootfs: &Path) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let relative = path.strip_prefix(base)?;
            let target = rootfs.join(relative);
            if path.is_dir() {
                std::fs::create_dir_all(&target)?;
                walk(&path, base, rootfs)?;
            } else {
                std::fs::copy(&path, &target)?;
                let executable = relative.starts_with("usr/local/bin") || relative.starts_with("kind/bin");
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))?;
            }
        }
        Ok(())
    }
    walk(from, from, rootfs)
}

/// kubeadm, kubelet, kubectl and the control-plane binaries, through a wrapper module: the
/// k8s.io/kubernetes go.mod points its staging modules (k8s.io/api, ...) at local directories,
/// which a dependent module cannot see, so the wrapper points each at its published v0.X.Y.
fn build_kubernetes(go: &Go, kubernetes_go_mod: &Path, out: &Path, log: &Path) -> Result<()> {
    let upstream = std::fs::read_to_string(kubernetes_go_mod)?;
    let staging_version = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
    let staging: Vec<&str> =
        upstream.lines().filter_map(|line| line.trim().split_once(" => ./staging/").map(|(module, _)| module.trim())).collect();
    if staging.is_empty() {
        bail!("found no staging modules in {}: the wrapper-module recipe needs revisiting", kubernetes_go_mod.display());
    }
    // The same GODEBUG defaults as the official build (k8s.io/kubernetes' own go.mod).
    let godebug: Vec<&str> = upstream.lines().filter(|l| l.starts_with("godebug ")).collect();
    let mut go_mod_extra = format!("{}\n\nreplace (\n", godebug.join("\n"));
    for module in &staging {
        go_mod_extra.push_str(&format!("\t{module} => {module} {staging_version}\n"));
    }
    go_mod_extra.push_str(")\n");
    let (major, minor) = kube_major_minor()?;
    // Stamped as hack/lib/version.sh does; unstamped binaries report v0.0.0 and kubeadm refuses them.
    let mut ldflags = String::from("-s -w");
    for package in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        ldflags.push_str(&format!(
            " -X {package}.gitVersion={KUBERNETES_VERSION} -X {package}.gitMajor={major} -X {package}.gitMinor={minor} \
             -X {package}.gitTreeState=clean -X {package}.buildDate=1970-01-01T00:00:00Z"
        ));
    }
    let packages: Vec<String> =
        ["kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"]
            .iter()
            .map(|b| format!("k8s.io/kubernetes/cmd/{b}"))
            .collect();
    let build = WrapperBuild { go_mod_extra, ldflags, ..WrapperBuild::new("k8s.io/kubernetes", KUBERNETES_VERSION, &packages) };
    go.build_in_wrapper(&build, out, log)
}

fn kube_major_minor() -> Result<(String, String)> {
    let mut parts = KUBERNETES_VERSION.trim_start_matches('v').split('.');
    Ok((parts.next().context("major")?.to_owned(), parts.next().context("minor")?.to_owned()))
}

/// CoreDNS without the plugins that reach outside a cluster: the cloud providers' DNS (azure,
/// clouddns, route53, with their SDKs), etcd, dnstap, geoip and trace. What kubeadm's Corefile
/// uses (errors, health, ready, kubernetes, prometheus, forward, cache, loop, reload,
/// loadbalance) and every other plugin stay. Measured cold: 158 s with every plugin.
const COREDNS_LEFT_OUT: &[&str] = &["azure", "clouddns", "route53", "etcd", "dnstap", "geoip", "trace"];
const COREDNS_FLAVOUR: &str = "in-cluster-plugins";

fn build_coredns(go: &Go, version: &str, out: &Path, log: &Path) -> Result<()> {
    let module = "github.com/coredns/coredns";
    let source = go.download(&format!("{module}@{version}"))?;
    // The plugin list as CoreDNS's generator writes it (core/plugin/zplugin.go), less those.
    let list = std::fs::read_to_string(source.dir.join("core/plugin/zplugin.go")).context("reading CoreDNS's plugin list")?;
    let kept: String = list
        .lines()
        .filter(|line| !COREDNS_LEFT_OUT.iter().any(|p| line.trim() == format!("_ \"{module}/plugin/{p}\"")))
        .map(|line| format!("{line}\n"))
        .collect();
    anyhow::ensure!(
        list.lines().count() - kept.lines().count() == COREDNS_LEFT_OUT.len(),
        "CoreDNS {version}'s plugin list does not name every plugin shipshape leaves out: the recipe needs updating"
    );
    let copy = super::go_image::patched_copy(
        &source.dir,
        &format!("coredns-{version}-{COREDNS_FLAVOUR}"),
        &[("core/plugin/zplugin.go", kept)],
        &[],
    )?;
    let build = WrapperBuild {
        go_mod_extra: format!("replace {module} => {}", copy.display()),
        sums_from: Some(source.dir.join("go.sum")),
        ..WrapperBuild::new(module, version, &[module.to_owned()])
    };
    go.build_in_wrapper(&build, out, log)
}

/// etcd's own go.mod has replace directives, so `go install` refuses it: built in a wrapper.
fn build_etcd(go: &Go, version: &str, out: &Path, log: &Path) -> Result<()> {
    let server = "go.etcd.io/etcd/server/v3";
    go.build_in_wrapper(&WrapperBuild::new(server, version, &[server.to_owned()]), out, log)?;
    // go names a /vN module's binary after the element before it: "server".
    std::fs::rename(out.join("server"), out.join("etcd")).context("naming the etcd binary")
}

fn build_pause(sh: &Shell, kubernetes_dir: &Path, out: &Path, log: &Path) -> Result<()> {
    let source = kubernetes_dir.join("build/pause/linux/pause.c");
    let binary = out.join("pause");
    let version = format!("-DVERSION={KUBERNETES_VERSION}-shipshape");
    run_logged(cmd!(sh, "gcc -Os -Wall -Werror -static {version} -o {binary} {source}"), log, "compiling pause.c")
}

/// The images kubeadm will run, read from the built kubeadm itself.
struct KubeadmImages {
    tags: Vec<String>,
}

impl KubeadmImages {
    fn list(sh: &Shell, kubeadm: &Path) -> Result<KubeadmImages> {
        let out = read_or_explain(cmd!(sh, "{kubeadm} config images list --kubernetes-version {KUBERNETES_VERSION}"))?;
        Ok(KubeadmImages { tags: out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect() })
    }

    /// The full reference of the image whose repository ends in `/name`.
    fn reference(&self, name: &str) -> Result<&str> {
        self.tags
            .iter()
            .find(|t| t.rsplit_once(':').is_some_and(|(repo, _)| repo.ends_with(&format!("/{name}"))))
            .map(String::as_str)
            .with_context(|| format!("kubeadm lists no {name} image: {:?}", self.tags))
    }

    fn tag_of(&self, name: &str) -> Result<String> {
        Ok(self.reference(name)?.rsplit_once(':').unwrap().1.to_owned())
    }

    /// "3.6.4-0" (kubeadm's image tag) -> "v3.6.4" (the Go module version).
    fn etcd_module_version(&self) -> Result<String> {
        let tag = self.tag_of("etcd")?;
        Ok(format!("v{}", tag.split('-').next().unwrap_or(&tag)))
    }
}

struct ImageBinaries<'a> {
    kube: &'a Path,
    etcd: &'a Path,
    coredns: &'a Path,
    pause: &'a Path,
    rootfs: &'a Path,
}

/// containerd's sandbox image in kind's config.toml: the pause image must carry this tag too.
const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// One `docker save` archive per image kubeadm lists, each under its exact tag.
fn build_images(sh: &Shell, docker: &Docker, images: &KubeadmImages, bins: &ImageBinaries, out: &Path, log: &Path) -> Result<()> {
    let work = out.join("work");
    for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        let layout = work.join(component);
        place(&bins.kube.join(component), &layout.join("usr/local/bin").join(component))?;
        let tag = images.reference(component)?;
        import_and_save(sh, docker, &layout, tag, &[], &[format!(r#"ENTRYPOINT ["/usr/local/bin/{component}"]"#)], out, log)?;
    }
    let etcd = work.join("etcd");
    place(&bins.etcd.join("etcd"), &etcd.join("usr/local/bin/etcd"))?;
    std::fs::create_dir_all(etcd.join("var/lib/etcd"))?;
    import_and_save(sh, docker, &etcd, images.reference("etcd")?, &[], &[r#"ENTRYPOINT ["/usr/local/bin/etcd"]"#.to_owned()], out, log)?;

    // CoreDNS runs with `-conf /etc/coredns/Corefile` as its only args: the image's entrypoint
    // must be the binary.
    let coredns = work.join("coredns");
    place(&bins.coredns.join("coredns"), &coredns.join("coredns"))?;
    import_and_save(sh, docker, &coredns, images.reference("coredns")?, &[], &[r#"ENTRYPOINT ["/coredns"]"#.to_owned()], out, log)?;

    let pause = work.join("pause");
    place(&bins.pause.join("pause"), &pause.join("pause"))?;
    let pause_tag = images.reference("pause")?;
    let extra: Vec<&str> = if pause_tag == SANDBOX_IMAGE { vec![] } else { vec![SANDBOX_IMAGE] };
    import_and_save(sh, docker, &pause, pause_tag, &extra, &[r#"ENTRYPOINT ["/pause"]"#.to_owned()], out, log)?;

    let proxy = work.join("kube-proxy");
    kube_proxy_layout(sh, bins, &proxy, log)?;
    import_and_save(
        sh,
        docker,
        &proxy,
        images.reference("kube-proxy")?,
        &[],
        &[r#"ENTRYPOINT ["/usr/local/bin/kube-proxy"]"#.to_owned()],
        out,
        log,
    )?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// Turns a directory into an image (`docker import`, no base image) and saves it, tagged `tag`
/// and `extra_tags`, as `<out>/<repository name>.tar`.
#[allow(clippy::too_many_arguments)]
fn import_and_save(
    sh: &Shell,
    docker: &Docker,
    layout: &Path,
    tag: &str,
    extra_tags: &[&str],
    changes: &[String],
    out: &Path,
    log: &Path,
) -> Result<()> {
    let tarball = layout.with_extension("layer.tar");
    pack(sh, layout, &tarball, log, &format!("packing {tag}"))?;
    let mut all_changes = vec!["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    all_changes.extend_from_slice(changes);
    docker.import(&tarball, tag, &all_changes, log)?;
    for extra in extra_tags {
        docker.tag(tag, extra, log)?;
    }
    let name = tag.rsplit_once(':').unwrap().0.rsplit('/').next().unwrap();
    let archive = out.join(format!("{name}.tar"));
    let tags: Vec<&str> = std::iter::once(tag).chain(extra_tags.iter().copied()).collect();
    docker.save_tags(&tags, &archive, log)?;
    std::fs::remove_file(&tarball)?;
    Ok(())
}

/// The top-level directories that merged-/usr Debian makes links into /usr.
const MERGED_USR_LINKS: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// kube-proxy in iptables mode runs iptables-restore and conntrack: its image holds those
/// (Debian's files, taken from the node rootfs with their library closure), busybox for a shell,
/// and a wrapper that points `iptables` at the backend the node uses, as the official image's
/// iptables-wrapper does: kubelet's KUBE-IPTABLES-HINT chain marks which one that is.
fn kube_proxy_layout(sh: &Shell, bins: &ImageBinaries, layout: &Path, log: &Path) -> Result<()> {
    let rootfs = bins.rootfs;
    let closure = r#"set -eu
want="iptables conntrack"; seen=""
while [ -n "$want" ]; do
  set -- $want; pkg=$1; shift; want="$*"
  case " $seen " in *" $pkg "*) continue;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || continue
  seen="$seen $pkg"
  deps=$(dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$pkg" | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' | tr -d ' ')
  want="$want $deps"
done
for pkg in $seen; do dpkg -L "$pkg"; done | sort -u
"#;
    let files = read_or_explain(cmd!(sh, "chroot {rootfs} /bin/sh -c {closure}"))?;
    let list = layout.with_extension("files");
    // Debian is merged-/usr: packages list /lib/..., but /lib is a link to usr/lib in the rootfs.
    // Copy through the real paths; the top-level links are recreated below.
    let merged: Vec<(&str, String)> = MERGED_USR_LINKS
        .iter()
        .filter_map(|dir| std::fs::read_link(rootfs.join(dir)).ok().map(|target| (*dir, target.display().to_string())))
        .collect();
    let mut regular: Vec<String> = files
        .lines()
        .filter(|f| f.starts_with('/') && !f.starts_with("/usr/share/doc") && !f.starts_with("/usr/share/man"))
        .map(|f| {
            let f = f.trim_start_matches('/');
            match merged.iter().find(|(dir, _)| f.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))) {
                Some((dir, target)) => format!("{target}{}", &f[dir.len()..]),
                None => f.to_owned(),
            }
        })
        .filter(|f| rootfs.join(f).symlink_metadata().is_ok_and(|m| !m.is_dir()))
        .collect();
    regular.sort();
    regular.dedup();
    std::fs::write(&list, regular.join("\n"))?;
    std::fs::create_dir_all(layout)?;
    run_logged(
        cmd!(sh, "sh -c 'tar -C \"$1\" --files-from \"$2\" -cf - | tar -C \"$3\" -xf -' _ {rootfs} {list} {layout}"),
        log,
        "copying iptables and its libraries for kube-proxy",
    )?;
    std::fs::remove_file(&list)?;
    for link in MERGED_USR_LINKS {
        if let Ok(target) = std::fs::read_link(rootfs.join(link)) {
            let _ = std::os::unix::fs::symlink(target, layout.join(link));
        }
    }
    place(&rootfs.join("bin/busybox"), &layout.join("usr/local/bin/busybox"))?;
    for applet in ["sh", "grep", "ln", "cat"] {
        std::os::unix::fs::symlink("busybox", layout.join("usr/local/bin").join(applet))?;
    }
    place(&bins.kube.join("kube-proxy"), &layout.join("usr/local/bin/kube-proxy"))?;
    let wrapper = r#"#!/usr/local/bin/sh
# Points iptables* at the backend the node's kubelet uses (see KUBE-IPTABLES-HINT), then
# re-runs the command. The same decision as the official kube-proxy image's iptables-wrapper.
set -eu
mode=nft
if xtables-legacy-multi iptables-save -t mangle 2>/dev/null | grep -q KUBE-IPTABLES-HINT; then mode=legacy; fi
for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf "/usr/sbin/xtables-$mode-multi" "/usr/sbin/$cmd"
done
exec "$0" "$@"
"#;
    let sbin = layout.join("usr/sbin");
    std::fs::create_dir_all(&sbin)?;
    std::fs::write(sbin.join("iptables-wrapper"), wrapper)?;
    std::fs::set_permissions(sbin.join("iptables-wrapper"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for cmd in ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"] {
        let path = sbin.join(cmd);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink("iptables-wrapper", &path)?;
    }
    Ok(())
}

/// kind's build, by hand: the rootfs as an image, the binaries copied in, every image archive
/// imported into the node's containerd (pinned, not unpacked), and the result committed with
/// kind's entrypoint.
fn assemble_node(sh: &Shell, docker: &Docker, rootfs: &Path, kube: &Path, archives: &Path, out: &Path, log: &Path) -> Result<()> {
    let base = LOCAL_NODE_IMAGE.replace("kind-node", "kind-base");
    let tarball = out.join("rootfs.tar");
    pack(sh, rootfs, &tarball, log, "packing the rootfs")?;
    docker.import(&tarball, &base, &[], log)?;
    std::fs::remove_file(&tarball)?;
    let container = "shipshape-node-image-build";
    docker.start_sleeper(container, &base, log)?;
    let result = (|| -> Result<()> {
        for binary in ["kubeadm", "kubelet", "kubectl"] {
            docker.copy_into(&kube.join(binary), container, "/usr/bin/", log)?;
        }
        docker.exec(container, &format!("echo {KUBERNETES_VERSION} > /kind/version && mkdir -p /kind/images"), log)?;
        docker.copy_into(&archives.join("."), container, "/kind/images/", log)?;
        docker.exec_detached(container, "containerd > /var/log/containerd-build.log 2>&1")?;
        docker.exec(
            container,
            "for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; cat /var/log/containerd-build.log; exit 1",
            log,
        )?;
        docker.exec(
            container,
            "for f in /kind/images/*.tar; do ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
             --all-platforms --no-unpack --digests \"$f\" || exit 1; done; ctr --namespace=k8s.io images list --quiet",
            log,
        )?;
        docker.exec(
            container,
            "rm -rf /kind/images /var/log/containerd-build.log; pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done",
            log,
        )?;
        let changes = [
            r#"ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]"#.to_owned(),
            "ENV container=docker".to_owned(),
            "STOPSIGNAL SIGRTMIN+3".to_owned(),
        ];
        docker.commit(container, LOCAL_NODE_IMAGE, &changes, log)
    })();
    docker.remove_container(container);
    result?;
    std::fs::write(out.join("image"), LOCAL_NODE_IMAGE)?;
    Ok(())
}

/// The kubectl built with the local node image (the cluster's own version), if it was built.
pub fn built_kubectl() -> Result<Option<PathBuf>> {
    let path = crate::cache::root()?.join("stages").join(format!("kube-{}", kube_recipe_key())).join("kubectl");
    Ok(path.is_file().then_some(path))
}
