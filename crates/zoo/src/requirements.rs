//! A model's Python requirements, as FiftyOne's
//! `install_zoo_model_requirements` and `ensure_zoo_model_requirements`.

use zoo_manifest::{ErrorLevel, RequirementsCheck, ZooModel};

use crate::error::{Error, ErrorKind, Result, bail};
use crate::observe::Observer;

/// Whether an NVIDIA GPU is visible, without loading libtorch.
pub fn nvidia_gpu_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/gpus")
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
}

/// The Python packages a model's entry lists for this machine.
pub fn packages_of(model: &ZooModel) -> Vec<String> {
    model
        .model
        .requirements
        .as_ref()
        .map(|requirements| requirements.packages_for(nvidia_gpu_present()))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The distribution name of a requirement (`torch>=2` -> `torch`).
fn package_name(spec: &str) -> &str {
    spec.split(|character: char| {
        !(character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
    })
    .next()
    .unwrap_or_default()
}

/// The names among `requirements`' packages that `python` has installed.
pub fn installed_python_packages(python: &str, requirements: &[&str]) -> Vec<String> {
    let names: Vec<&str> = requirements
        .iter()
        .map(|spec| package_name(spec))
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let script = "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n    try:\n        m.version(n)\n        print(n)\n    except Exception:\n        pass\n";
    match zoo_process::scrub_secrets(std::process::Command::new(python).arg("-c"))
        .arg(script)
        .args(&names)
        .output()
    {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(err) => {
            tracing::warn!("cannot run `{python}` to check Python packages: {err}");
            Vec::new()
        }
    }
}

/// The installed version of each of `requirements`' packages that `python`
/// has, by distribution name as given.
pub fn python_package_versions(
    python: &str,
    requirements: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let names: Vec<&str> = requirements
        .iter()
        .map(|spec| package_name(spec))
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Default::default();
    }
    let script = "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n    try:\n        print(n, m.version(n))\n    except Exception:\n        pass\n";
    match zoo_process::scrub_secrets(std::process::Command::new(python).arg("-c"))
        .arg(script)
        .args(&names)
        .output()
    {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, version)| (name.to_owned(), version.trim().to_owned()))
            .collect(),
        Err(err) => {
            tracing::warn!("cannot run `{python}` to check Python packages: {err}");
            Default::default()
        }
    }
}

/// The packages among `wanted` that `python` lacks.
pub fn missing_python_packages<'a>(python: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let installed = installed_python_packages(python, wanted);
    wanted
        .iter()
        .copied()
        .filter(|spec| {
            !installed
                .iter()
                .any(|found| found.eq_ignore_ascii_case(package_name(spec)))
        })
        .collect()
}

/// `python -m pip install PACKAGES...`, quoted for a shell.
pub fn pip_command<'a>(python: &'a str, packages: impl IntoIterator<Item = &'a str>) -> String {
    zoo_process::shell_words([python, "-m", "pip", "install"].into_iter().chain(packages))
}

/// Reports an unmet requirement at `level`: an error, a note, or nothing.
pub(crate) fn at_level(level: ErrorLevel, message: String, observer: &dyn Observer) -> Result<()> {
    match level {
        ErrorLevel::Fail => Err(Error::new(ErrorKind::Requirements, message)),
        ErrorLevel::Warn => {
            observer.note(&format!("warning: {message}"));
            Ok(())
        }
        ErrorLevel::Ignore => Ok(()),
    }
}

/// Installs the model's Python packages with `python -m pip install`
/// (FiftyOne's `install_zoo_model_requirements`); a failed install is
/// reported at `level`. pip runs without zoo's secrets in its environment.
pub fn install_requirements(
    python: &str,
    model: &ZooModel,
    level: ErrorLevel,
    observer: &dyn Observer,
) -> Result<()> {
    let requirements = model.model.requirements.clone().unwrap_or_default();
    let packages = requirements.packages_for(nvidia_gpu_present());
    if packages.is_empty() {
        return Ok(());
    }
    // Manifest text is hostile: a "package" such as `--index-url=...` or
    // `-r FILE` would be read by pip as an option.
    if let Some(option) = packages.iter().find(|package| package.starts_with('-')) {
        bail!(
            Requirements,
            "`{}` lists the requirement `{option}`, which pip would read as an option; refusing to install it",
            model.name()
        );
    }
    let command = pip_command(python, packages.iter().copied());
    observer.note(&format!(
        "installing the requirements of `{}`: {command}",
        model.name()
    ));
    let mut pip = std::process::Command::new(python);
    pip.args(["-m", "pip", "install"])
        .args(&packages)
        .stdout(std::process::Stdio::null());
    // pip runs a stranger's build code: without zoo's secrets. It stays in
    // the terminal's process group, so Ctrl-C stops it with zoo.
    zoo_process::scrub_secrets(&mut pip);
    match pip.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => at_level(
            level,
            format!(
                "installing the requirements of `{}` failed: `{command}` exited with {status}",
                model.name()
            ),
            observer,
        ),
        Err(err) => at_level(
            level,
            format!(
                "installing the requirements of `{}` failed: cannot run `{python}` ({err}); set `ZOO_PYTHON` to a Python with pip",
                model.name()
            ),
            observer,
        ),
    }
}

/// Checks the model's requirements against `python` and this machine
/// (missing Python packages, device support), reporting nothing.
pub fn check_requirements(python: &str, model: &ZooModel) -> RequirementsCheck {
    let requirements = model.model.requirements.clone().unwrap_or_default();
    let gpu = nvidia_gpu_present();
    let installed = installed_python_packages(python, &requirements.packages_for(gpu));
    requirements.check(gpu, |name| {
        installed
            .iter()
            .any(|found| found.eq_ignore_ascii_case(name))
    })
}

/// Reports an unsatisfied `check` of `model` at `level` (FiftyOne's
/// `ensure_zoo_model_requirements`).
pub fn enforce_requirements(
    python: &str,
    model: &ZooModel,
    check: &RequirementsCheck,
    level: ErrorLevel,
    observer: &dyn Observer,
) -> Result<()> {
    if check.is_satisfied() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !check.missing_packages.is_empty() {
        let command = pip_command(python, check.missing_packages.iter().map(String::as_str));
        problems.push(format!(
            "missing Python packages {} (install them with `{command}`, or `--install`)",
            check.missing_packages.join(", "),
        ));
    }
    if let Some(device) = &check.unsupported_device {
        problems.push(format!("the model does not support running on {device}"));
    }
    at_level(
        level,
        format!(
            "requirements of `{}` are not met: {}",
            model.name(),
            problems.join("; ")
        ),
        observer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_drop_version_specifiers_and_extras() {
        assert_eq!(package_name("torch>=2.1"), "torch");
        assert_eq!(package_name("open_clip_torch"), "open_clip_torch");
        assert_eq!(package_name("transformers[torch]==4.1"), "transformers");
        assert_eq!(package_name("segment-anything"), "segment-anything");
    }

    #[test]
    fn a_python_that_cannot_run_has_no_packages() {
        assert!(installed_python_packages("/nonexistent/python", &["numpy"]).is_empty());
        assert_eq!(
            missing_python_packages("/nonexistent/python", &["numpy>=1", "torch"]),
            ["numpy>=1", "torch"]
        );
    }
}
