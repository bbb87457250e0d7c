//! `cargo xtask image [--check]`: the container image the deploy recipes
//! name, built here with no registry reachable.
//!
//! `deploy/Containerfile` builds it for users with a registry (a Rust stage,
//! then Debian's slim image). Here no base image can be pulled, so the root
//! filesystem is made from what the binaries load: `zoo` and `zoo-torch`
//! (release, debug info stripped) in `/usr/local/bin`, the libraries `ldd`
//! names from outside the system folders (libtorch's) in `/usr/local/lib/zoo`
//! as in the Containerfile, the system ones at their own paths with the
//! loader, and the CA certificates. The image's `ENV`, `WORKDIR` and `CMD`
//! are the Containerfile's own lines between `runtime:begin` and
//! `runtime:end`, so the two images run the same way. Podman builds it `FROM
//! scratch` with the `vfs` storage driver and runs it with `runc`, cgroupfs
//! and no default ulimits (the configuration files are written next to the
//! root filesystem, in `target/image/`). The image is tagged `zoo:latest`
//! and `ghcr.io/zoo-rs/zoo:latest`, the name the recipes use.
//!
//! `--check` then runs `scale::kubernetes_recipe_runs_in_the_image`: the
//! Kubernetes recipe's command line, as written, in the image, against the
//! loopback S3 server, merged, equal to an unsharded run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::setup;

/// The tags the image gets.
const TAGS: &[&str] = &["localhost/zoo:latest", "ghcr.io/zoo-rs/zoo:latest"];
/// Where libraries from outside the system folders go (as in the
/// Containerfile).
const LIB_DIR: &str = "usr/local/lib/zoo";

/// `containers.conf` for this machine: runc, cgroupfs, no default ulimits
/// (raising them is not permitted in this sandbox).
const CONTAINERS_CONF: &str = "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n";

pub(crate) fn run(sh: &Shell, args: &[String]) -> Result<()> {
    let check = args.iter().any(|arg| arg == "--check");
    if let Some(other) = args.iter().find(|arg| *arg != "--check") {
        bail!("unknown argument `{other}` (expected `--check`)");
    }
    cmd!(sh, "podman --version")
        .quiet()
        .ignore_stdout()
        .run()
        .context("podman is needed (`apt-get install podman`)")?;
    let zoo = setup::build_release(sh)?;
    let root = sh.current_dir().join("target/image");
    let rootfs = root.join("rootfs");
    if rootfs.exists() {
        fs_err::remove_dir_all(&rootfs)?;
    }
    fs_err::create_dir_all(rootfs.join("usr/local/bin"))?;
    fs_err::create_dir_all(rootfs.join(LIB_DIR))?;

    let _env = setup::libtorch_env(sh)?;
    let mut libraries = BTreeSet::new();
    for name in ["zoo", "zoo-torch"] {
        let from = zoo.with_file_name(name);
        let to = rootfs.join("usr/local/bin").join(name);
        fs_err::copy(&from, &to)?;
        cmd!(sh, "strip --strip-debug {to}").run()?;
        let listing = cmd!(sh, "ldd {from}").read()?;
        libraries.extend(loaded_libraries(&listing)?);
    }
    for library in &libraries {
        let target = if is_system(library) {
            rootfs.join(library.strip_prefix("/").unwrap_or(library))
        } else {
            rootfs
                .join(LIB_DIR)
                .join(library.file_name().context("a library without a name")?)
        };
        fs_err::create_dir_all(target.parent().unwrap_or(&rootfs))?;
        // Copied through links, under the name the binary asks for.
        fs_err::copy(library, &target)?;
    }
    for (path, mode) in [("tmp", 0o1777), ("models", 0o777), ("etc/ssl/certs", 0o755)] {
        let dir = rootfs.join(path);
        fs_err::create_dir_all(&dir)?;
        set_mode(&dir, mode)?;
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certificates.is_file() {
        fs_err::copy(
            certificates,
            rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        )?;
    }
    fs_err::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/sbin/nologin\n",
    )?;

    let containerfile = fs_err::read_to_string(sh.current_dir().join("deploy/Containerfile"))?;
    let runtime = runtime_lines(&containerfile)?;
    fs_err::write(
        root.join("Containerfile"),
        format!("FROM scratch\nCOPY rootfs/ /\n{runtime}"),
    )?;
    fs_err::write(root.join("containers.conf"), CONTAINERS_CONF)?;
    fs_err::write(
        root.join("storage.conf"),
        "[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n",
    )?;
    let _conf = sh.push_env("CONTAINERS_CONF", root.join("containers.conf"));
    let _storage = sh.push_env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"));
    let tags: Vec<String> = TAGS
        .iter()
        .flat_map(|tag| ["-t".to_owned(), (*tag).to_owned()])
        .collect();
    cmd!(
        sh,
        "podman build --quiet {tags...} -f {root}/Containerfile {root}"
    )
    .run()?;
    let image = TAGS[0];
    let version = cmd!(sh, "podman run --rm {image} zoo --version").read()?;
    // `zoo system` hands over to `zoo-torch`, which loads libtorch.
    let system = cmd!(sh, "podman run --rm {image} zoo system").read()?;
    println!("image {image}: {version}\n{system}");
    if check {
        let python = setup::test_python(sh)?;
        let _python = sh.push_env("ZOO_TEST_PYTHON", python);
        let _image = sh.push_env("ZOO_TEST_IMAGE", image);
        cmd!(
            sh,
            "cargo test --locked -p zoo-cli --test e2e -- scale::kubernetes_recipe_runs_in_the_image --nocapture"
        )
        .run()?;
    }
    Ok(())
}

/// The lines of `deploy/Containerfile` between `# runtime:begin` and
/// `# runtime:end`.
fn runtime_lines(containerfile: &str) -> Result<String> {
    let begin = containerfile
        .find("# runtime:begin\n")
        .context("deploy/Containerfile has no `# runtime:begin` line")?;
    let rest = &containerfile[begin + "# runtime:begin\n".len()..];
    let end = rest
        .find("# runtime:end")
        .context("deploy/Containerfile has no `# runtime:end` line")?;
    Ok(rest[..end].to_owned())
}

/// The libraries an `ldd` listing names, with the loader.
fn loaded_libraries(listing: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for line in listing.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("a library the binary needs is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

/// A library of the system's (kept at its own path in the image).
fn is_system(path: &Path) -> bool {
    ["/lib", "/lib64", "/usr/lib"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_listings_give_every_library_and_the_loader() {
        let listing = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibtorch.so => /cache/torch/lib/libtorch.so (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        let found = loaded_libraries(listing).unwrap();
        assert_eq!(
            found,
            [
                PathBuf::from("/cache/torch/lib/libtorch.so"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(!is_system(&found[0]) && is_system(&found[1]) && is_system(&found[2]));
        let missing = loaded_libraries("\tlibc10.so => not found\n").unwrap_err();
        assert!(missing.to_string().contains("libc10.so"));
    }

    /// The image here runs as the Containerfile's: its runtime lines are
    /// found, and they put libraries where this task copies them.
    #[test]
    fn the_containerfiles_runtime_lines_are_the_images() {
        let root = crate::workspace_root();
        let containerfile = fs_err::read_to_string(root.join("deploy/Containerfile")).unwrap();
        let runtime = runtime_lines(&containerfile).unwrap();
        assert!(
            runtime.contains(&format!("ENV LD_LIBRARY_PATH=/{LIB_DIR}\n")),
            "{runtime}"
        );
        assert!(
            containerfile.contains(&format!("COPY --from=build /out/lib/ /{LIB_DIR}/")),
            "{containerfile}"
        );
        assert!(containerfile.contains("COPY --from=build /out/bin/ /usr/local/bin/"));
        for recipe in [
            "deploy/kubernetes/apply-job.yaml",
            "deploy/kubernetes/merge-job.yaml",
        ] {
            let text = fs_err::read_to_string(root.join(recipe)).unwrap();
            assert!(text.contains(&format!("image: {}", TAGS[1])), "{recipe}");
        }
    }
}
