//! Host directories made visible to a session (`--dir HOST:GUEST[:ro]`).
//!
//! Access goes through wasmtime-wasi's capability-based filesystem: a guest
//! cannot leave a mount with `..`, absolute paths or symlinks.

use std::path::PathBuf;
use std::str::FromStr;

/// A bad `--dir` specification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// Not of the form `HOST:GUEST[:ro|:rw]`.
    #[error("invalid mount '{0}': expected HOST:GUEST[:ro]")]
    Syntax(String),
    /// The guest path must be absolute.
    #[error("invalid mount '{0}': the guest path must start with '/' and hold no '.' or '..'")]
    GuestPath(String),
    /// The mode after the guest path is neither `ro` nor `rw`.
    #[error("invalid mount '{spec}': unknown mode '{mode}' (ro or rw)")]
    Mode {
        /// The whole specification.
        spec: String,
        /// The mode given.
        mode: String,
    },
    /// Two mounts at the same guest path.
    #[error("two mounts at the guest path '{0}'")]
    Duplicate(String),
    /// The host directory could not be opened.
    #[error("cannot mount '{path}'")]
    Open {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: super::BoxError,
    },
}

/// One host directory mounted into the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (absolute).
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

impl FromStr for Mount {
    type Err = MountError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        // HOST:GUEST or HOST:GUEST:MODE; a guest path is absolute, so a last
        // part that is not is the mode (or a relative guest path).
        let (rest, read_only) = match spec.rsplit_once(':') {
            Some((rest, last)) if !last.starts_with('/') && rest.contains(':') => {
                let read_only = match last {
                    "ro" => true,
                    "rw" => false,
                    mode => {
                        return Err(MountError::Mode {
                            spec: spec.to_owned(),
                            mode: mode.to_owned(),
                        });
                    }
                };
                (rest, read_only)
            }
            _ => (spec, false),
        };
        let (host, guest) = rest
            .rsplit_once(':')
            .ok_or_else(|| MountError::Syntax(spec.to_owned()))?;
        if host.is_empty() || guest.is_empty() {
            return Err(MountError::Syntax(spec.to_owned()));
        }
        // Absolute, and naming the place it says: no `.` or `..` parts.
        if !guest.starts_with('/') || guest.split('/').any(|part| part == "." || part == "..") {
            return Err(MountError::GuestPath(spec.to_owned()));
        }
        Ok(Mount {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            read_only,
        })
    }
}

/// Checks that no two mounts share a guest path.
pub fn check(mounts: &[Mount]) -> Result<(), MountError> {
    let mut seen = std::collections::HashSet::new();
    for mount in mounts {
        let guest = mount.guest.trim_end_matches('/');
        if !seen.insert(if guest.is_empty() { "/" } else { guest }) {
            return Err(MountError::Duplicate(mount.guest.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_modes_and_duplicate_guest_paths() {
        assert!(matches!(
            "/tmp/x:/x:RO".parse::<Mount>(),
            Err(MountError::Mode { mode, .. }) if mode == "RO"
        ));
        let a: Mount = "/tmp/a:/data".parse().unwrap();
        let b: Mount = "/tmp/b:/data/:ro".parse().unwrap();
        assert!(matches!(
            check(&[a.clone(), b]),
            Err(MountError::Duplicate(_))
        ));
        let c: Mount = "/tmp/c:/other".parse().unwrap();
        assert!(check(&[a, c]).is_ok());
    }

    #[test]
    fn parses_read_only_and_read_write() {
        let m: Mount = "/tmp/x:/data:ro".parse().unwrap();
        assert_eq!(m.host, PathBuf::from("/tmp/x"));
        assert_eq!(m.guest, "/data");
        assert!(m.read_only);
        let m: Mount = "/tmp/x:/data".parse().unwrap();
        assert!(!m.read_only);
    }

    #[test]
    fn rejects_relative_guest_paths_and_garbage() {
        assert!(matches!(
            "/tmp:data".parse::<Mount>(),
            Err(MountError::GuestPath(_))
        ));
        assert!(matches!(
            "nocolon".parse::<Mount>(),
            Err(MountError::Syntax(_))
        ));
        assert!(matches!(":/x".parse::<Mount>(), Err(MountError::Syntax(_))));
        assert!(matches!(
            "/tmp:/m/../..".parse::<Mount>(),
            Err(MountError::GuestPath(_))
        ));
    }
}
