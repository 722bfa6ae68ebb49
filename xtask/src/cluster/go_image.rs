//! Operator images built here from their Go modules, since no public registry can be pulled from:
//! one static binary on an otherwise empty root (plus /tmp), built once per version as a cached
//! stage, imported into Docker and pushed to the local registry, as every image reaches
//! shipshape's clusters. The Sealed Secrets controller, External Secrets Operator and Prometheus
//! are made this way.
use std::path::{Path, PathBuf};

use anyhow::Result;
use xshell::Shell;

use super::docker::Docker;
use super::layout::{copy_tree, pack, place};
use super::stage::Stages;
use crate::go::{Go, WrapperBuild};

pub struct GoImage<'a> {
    /// The stage's and the log's name, e.g. `sealed-secrets-controller`.
    pub name: &'a str,
    /// Said while building: what the binary is.
    pub about: &'a str,
    /// The image's repository, e.g. `shipshape/sealed-secrets-controller`; its tag is the version.
    pub repository: &'a str,
    /// Where the binary lives in the image; the image's entrypoint.
    pub binary_in_image: &'a str,
    /// The image's user (numeric: the images have no /etc/passwd).
    pub user: u32,
    /// Said in the tag after the version when the build differs from upstream's
    /// (`v0.20.4-kubernetes-only`).
    pub flavour: Option<&'a str>,
    /// The image runs its binary as CMD, not ENTRYPOINT: for a chart whose container `args`
    /// start with the binary's path, as upstream's image expects.
    pub args_name_the_binary: bool,
    /// How to build it. Its single package becomes the binary.
    pub build: WrapperBuild,
}

impl GoImage<'_> {
    /// `repository:version`, built unless Docker already has it.
    pub fn ensure(&self, sh: &Shell, docker: &Docker) -> Result<String> {
        let tag = match self.flavour {
            Some(flavour) => format!("{}-{flavour}", self.build.version),
            None => self.build.version.clone(),
        };
        let image = format!("{}:{tag}", self.repository);
        if docker.image_exists(&image) {
            return Ok(image);
        }
        let package = self.build.packages.first().cloned().unwrap_or_default();
        // go names a binary after the package's last element, or the one before a /vN suffix.
        let mut elements = package.rsplit('/');
        let last = elements.next().unwrap_or_default();
        let binary_name = if last.starts_with('v') && last[1..].parse::<u32>().is_ok() { elements.next().unwrap_or(last) } else { last };
        let mut stages = Stages::new()?;
        let built = stages.get(self.name, &tag, self.about, |out, log| {
            Go::detect(sh).build_in_wrapper(&self.build, out, log)?;
            let rootfs = out.join("rootfs");
            place(&out.join(binary_name), &rootfs.join(self.binary_in_image.trim_start_matches('/')))?;
            std::fs::create_dir_all(rootfs.join("tmp"))?;
            pack(sh, &rootfs, &out.join("rootfs.tar"), log, &format!("packing the {} image", self.name))?;
            std::fs::remove_dir_all(&rootfs)?;
            std::fs::remove_file(out.join(binary_name))?;
            Ok(())
        })?;
        let log = stages.log_path(&format!("{}-image", self.name))?;
        let directory = Path::new(self.binary_in_image).parent().map_or("/".into(), |p| p.display().to_string());
        let run = if self.args_name_the_binary { "CMD" } else { "ENTRYPOINT" };
        let changes = [format!("USER {}", self.user), format!("ENV PATH={directory}"), format!(r#"{run} ["{}"]"#, self.binary_in_image)];
        docker.import(&built.join("rootfs.tar"), &image, &changes, &log)?;
        Ok(image)
    }
}

/// The tag of an image reference `repository:tag` (what a chart's `image.tag` takes): the
/// charts get it from the built image, never from a version spelled again beside it (a
/// flavoured tag once left a chart asking for a tag no registry had).
pub fn tag_of(image: &str) -> &str {
    image.rsplit_once(':').map_or("latest", |(_, tag)| tag)
}

/// A copy of a downloaded module with some files replaced and some added (paths relative to
/// the module), kept in the cache under `sources/<name>` and made once: for a build that leaves
/// out parts of a module by rewriting its registration list, as upstream's own generators
/// would, or adds one file of shipshape's. The docs are not copied.
pub fn patched_copy(module: &Path, name: &str, replaced: &[(&str, String)], added: &[(&str, String)]) -> Result<PathBuf> {
    let sources = crate::cache::root()?.join("sources");
    let dir = sources.join(name);
    if dir.join("go.mod").is_file() {
        return Ok(dir);
    }
    // Not with_extension: the name's version has dots.
    let partial = sources.join(format!("{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    copy_tree(module, &partial, &|entry| entry != "docs")?;
    for (file, content) in replaced {
        let target = partial.join(file);
        anyhow::ensure!(target.is_file(), "{} has no {file} to replace: the recipe needs updating", module.display());
        std::fs::write(&target, content)?;
    }
    for (file, content) in added {
        let target = partial.join(file);
        anyhow::ensure!(!target.exists(), "{} already has {file}: the recipe needs updating", module.display());
        std::fs::write(&target, content)?;
    }
    std::fs::rename(&partial, &dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_chart_is_given_the_built_images_own_tag() {
        assert_eq!(super::tag_of("shipshape/external-secrets:v0.20.4-kubernetes-only"), "v0.20.4-kubernetes-only");
        assert_eq!(super::tag_of("localhost:5001/shipshape/prometheus:v0.316.0"), "v0.316.0");
    }
}
