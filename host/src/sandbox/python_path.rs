//! Where a session's imports come from beside the standard library: the
//! `--path` directories and archives, and a virtualenv's site-packages.
//!
//! Each directory is mounted read-only **at its own host path**, so modules
//! imported from it have their host path as `__file__` and tracebacks show
//! the host file, line and source, as they would natively. A wheel or zip is
//! imported by zipimport from its host path: the guest must be able to open
//! that one file and nothing beside it, so it is hard-linked (or, across
//! filesystems, copied) into a private staging directory that is mounted at
//! the archive's parent directory, holding the archives of that directory
//! that were asked for and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::mounts::Mount;

/// A `--path` or `--venv` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not exist (or cannot be read).
    #[error("--path {path}: {source}")]
    Missing {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Guest paths are text: a host path that is not UTF-8 cannot be one.
    #[error("--path {0}: not valid UTF-8, so the sandbox cannot name it")]
    NotUtf8(PathBuf),
    /// A file that is neither a wheel nor a zip.
    #[error("--path {0}: not a directory, a .whl or a .zip")]
    NotImportable(PathBuf),
    /// A virtualenv without a site-packages directory.
    #[error("{0}: no lib/python*/site-packages in it; is it a virtualenv?")]
    NotAVenv(PathBuf),
    /// An archive could not be staged for mounting.
    #[error("--path {path}: could not stage it for the sandbox")]
    Stage {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The python path of a session, resolved: cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PythonPath {
    inner: Arc<Resolved>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Resolved {
    /// `sys.path` entries, in order: canonical host paths.
    entries: Vec<PathBuf>,
    /// What the guest must see for them.
    mounts: Vec<Mount>,
}

impl PythonPath {
    /// Resolves `paths` (directories, `.whl`s and `.zip`s, in the order
    /// given) and then, if given, the site-packages of the virtualenv
    /// `venv` (and the directories its `.pth` files name; their `import`
    /// lines, code for the host's interpreter, are not run).
    pub fn resolve(paths: &[PathBuf], venv: Option<&Path>) -> Result<Self, PathError> {
        let mut entries: Vec<PathBuf> = Vec::new();
        let mut archives: Vec<PathBuf> = Vec::new();
        let push = |path: PathBuf, entries: &mut Vec<PathBuf>| {
            if !entries.contains(&path) {
                entries.push(path);
            }
        };
        for given in paths {
            let path = canonical(given)?;
            let meta = std::fs::metadata(&path).map_err(|source| PathError::Missing {
                path: given.clone(),
                source,
            })?;
            if meta.is_dir() {
                push(path, &mut entries);
            } else if meta.is_file() && is_archive(&path) {
                archives.push(path.clone());
                push(path, &mut entries);
            } else {
                return Err(PathError::NotImportable(given.clone()));
            }
        }
        if let Some(venv) = venv {
            let venv_root = canonical(venv).map_err(|_| PathError::NotAVenv(venv.to_path_buf()))?;
            for site in site_packages(venv)? {
                let extra = pth_directories(&site, &venv_root);
                push(site, &mut entries);
                for dir in extra {
                    push(dir, &mut entries);
                }
            }
        }
        let dirs: Vec<&PathBuf> = entries.iter().filter(|p| !archives.contains(p)).collect();
        let mut mounts: Vec<Mount> = dirs
            .iter()
            .map(|dir| Mount {
                host: (*dir).clone(),
                guest: dir.to_string_lossy().into_owned(),
                read_only: true,
            })
            .collect();
        // Archives already visible through a mounted directory need nothing.
        let staged: Vec<&PathBuf> = archives
            .iter()
            .filter(|archive| !dirs.iter().any(|dir| archive.starts_with(dir)))
            .collect();
        let mut parents: Vec<PathBuf> = staged
            .iter()
            .filter_map(|archive| archive.parent().map(Path::to_path_buf))
            .collect();
        parents.sort();
        parents.dedup();
        for parent in parents {
            let members: Vec<&PathBuf> = staged
                .iter()
                .copied()
                .filter(|archive| archive.parent() == Some(parent.as_path()))
                .collect();
            let host = stage(&members)?;
            mounts.push(Mount {
                host,
                guest: parent.to_string_lossy().into_owned(),
                read_only: true,
            });
        }
        Ok(PythonPath {
            inner: Arc::new(Resolved { entries, mounts }),
        })
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// The `sys.path` entries (host paths, which the guest sees as they are).
    pub fn entries(&self) -> impl Iterator<Item = &Path> {
        self.inner.entries.iter().map(PathBuf::as_path)
    }

    /// The read-only mounts that make the entries visible.
    pub(crate) fn mounts(&self) -> Result<Vec<Mount>, PathError> {
        Ok(self.inner.mounts.clone())
    }
}

fn canonical(given: &Path) -> Result<PathBuf, PathError> {
    let path = std::fs::canonicalize(given).map_err(|source| PathError::Missing {
        path: given.to_path_buf(),
        source,
    })?;
    if path.to_str().is_none() {
        return Err(PathError::NotUtf8(given.to_path_buf()));
    }
    Ok(path)
}

fn is_archive(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("whl") || ext.eq_ignore_ascii_case("zip"))
}

/// `VENV/lib/python*/site-packages`, canonical, sorted.
fn site_packages(venv: &Path) -> Result<Vec<PathBuf>, PathError> {
    let venv_path = canonical(venv)?;
    let lib = venv_path.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                .map(|e| e.path().join("site-packages"))
                .filter(|p| p.is_dir())
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        return Err(PathError::NotAVenv(venv.to_path_buf()));
    }
    Ok(found)
}

/// Directories named by the plain lines of `site`'s `.pth` files (as
/// Python's `site` module reads them: relative to `site`, existing only),
/// inside `venv` only: a `.pth` file is written by whatever package was
/// installed, and must not widen what the sandbox sees beyond the venv (a
/// line `/` or `/proc/self` would show the host). Directories outside it
/// (an editable install's project) are skipped with a warning: give them
/// as `--path`.
fn pth_directories(site: &Path, venv: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(site) else {
        return Vec::new();
    };
    let mut pth: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "pth"))
        .collect();
    pth.sort();
    let mut dirs = Vec::new();
    for file in pth {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("import ")
                || line.starts_with("import\t")
            {
                continue;
            }
            if let Ok(dir) = std::fs::canonicalize(site.join(line))
                && dir.is_dir()
                && dir.to_str().is_some()
            {
                if dir.starts_with(venv) {
                    dirs.push(dir);
                } else {
                    tracing::warn!(
                        pth = %file.display(),
                        dir = %dir.display(),
                        "a .pth file names a directory outside the virtualenv: not \
                         mounted (give it as --path to import from it)"
                    );
                }
            }
        }
    }
    dirs
}

/// A private directory holding (links to) `archives`, all of one parent.
/// Named by the archives' paths, sizes and modification times, so a changed
/// archive is staged afresh; shared by the processes of this user.
fn stage(archives: &[&PathBuf]) -> Result<PathBuf, PathError> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let first = archives[0];
    let fail = |source: std::io::Error| PathError::Stage {
        path: first.clone(),
        source,
    };
    let mut hasher = Sha256::new();
    for archive in archives {
        let meta = std::fs::metadata(archive).map_err(fail)?;
        hasher.update(archive.as_os_str().as_encoded_bytes());
        hasher.update(meta.len().to_le_bytes());
        hasher.update(meta.mtime().to_le_bytes());
        hasher.update(meta.mtime_nsec().to_le_bytes());
    }
    let root = super::cache::private_dir("pushy-archives").ok_or_else(|| {
        fail(std::io::Error::other(
            "no private temporary directory of this user's",
        ))
    })?;
    let dir = root.join(&hex::encode(hasher.finalize())[..32]);
    if dir.is_dir() {
        return Ok(dir);
    }
    let building = tempfile::Builder::new()
        .prefix(".staging")
        .tempdir_in(&root)
        .map_err(fail)?;
    for archive in archives {
        let name = archive
            .file_name()
            .expect("a canonical file path has a name");
        let target = building.path().join(name);
        if std::fs::hard_link(archive, &target).is_err() {
            std::fs::copy(archive, &target).map_err(|source| PathError::Stage {
                path: (*archive).clone(),
                source,
            })?;
        }
    }
    let built = building.keep();
    if let Err(error) = std::fs::rename(&built, &dir) {
        let _ = std::fs::remove_dir_all(&built);
        // Another process staged the same archives first.
        if !dir.is_dir() {
            return Err(fail(error));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_mount_at_their_host_paths_and_archives_alone() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let project = root_path.join("project");
        std::fs::create_dir(&project).unwrap();
        let dist = root_path.join("dist");
        std::fs::create_dir(&dist).unwrap();
        let wheel = dist.join("pkg-1.0-py3-none-any.whl");
        std::fs::write(&wheel, b"PK\x05\x06").unwrap();
        std::fs::write(dist.join("secret.txt"), b"not for the guest").unwrap();
        let path = PythonPath::resolve(&[project.clone(), wheel.clone()], None).unwrap();
        let entries: Vec<&Path> = path.entries().collect();
        assert_eq!(entries, vec![project.as_path(), wheel.as_path()]);
        let mounts = path.mounts().unwrap();
        assert_eq!(mounts.len(), 2);
        assert!(mounts.iter().all(|m| m.read_only));
        assert_eq!(mounts[0].host, project);
        assert_eq!(mounts[0].guest, project.to_str().unwrap());
        // The wheel's directory is seen at its host path, holding the wheel only.
        assert_eq!(mounts[1].guest, dist.to_str().unwrap());
        let staged: Vec<_> = std::fs::read_dir(&mounts[1].host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(staged, vec![wheel.file_name().unwrap().to_owned()]);
    }

    #[test]
    fn bad_paths_are_named() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("nope");
        assert!(matches!(
            PythonPath::resolve(std::slice::from_ref(&missing), None),
            Err(PathError::Missing { path, .. }) if path == missing
        ));
        let fifo = root.path().join("pipe.zip");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            PythonPath::resolve(std::slice::from_ref(&fifo), None),
            Err(PathError::NotImportable(_))
        ));
        let text = root.path().join("notes.txt");
        std::fs::write(&text, "x").unwrap();
        assert!(matches!(
            PythonPath::resolve(std::slice::from_ref(&text), None),
            Err(PathError::NotImportable(_))
        ));
        assert!(matches!(
            PythonPath::resolve(&[], Some(root.path())),
            Err(PathError::NotAVenv(_))
        ));
    }

    #[test]
    fn a_venv_brings_site_packages_and_its_pth_directories() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let site = root_path.join("venv/lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        let src = root_path.join("venv/src");
        std::fs::create_dir(&src).unwrap();
        let outside = root_path.join("elsewhere");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(
            site.join("editable.pth"),
            format!(
                "# a comment\nimport os; print('host code')\n{}\nmissing-dir\n{}\n/\n/proc/self\n",
                src.display(),
                outside.display()
            ),
        )
        .unwrap();
        let path = PythonPath::resolve(&[], Some(&root_path.join("venv"))).unwrap();
        let entries: Vec<&Path> = path.entries().collect();
        // Inside the venv only: never the host's root, /proc, or elsewhere.
        assert_eq!(entries, vec![site.as_path(), src.as_path()]);
    }
}
