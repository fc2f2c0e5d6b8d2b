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
    #[error("invalid mount '{0}': the guest path must start with '/'")]
    GuestPath(String),
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
        let (rest, read_only) = if let Some(rest) = spec.strip_suffix(":ro") {
            (rest, true)
        } else if let Some(rest) = spec.strip_suffix(":rw") {
            (rest, false)
        } else {
            (spec, false)
        };
        let (host, guest) = rest
            .rsplit_once(':')
            .ok_or_else(|| MountError::Syntax(spec.to_owned()))?;
        if host.is_empty() || guest.is_empty() {
            return Err(MountError::Syntax(spec.to_owned()));
        }
        if !guest.starts_with('/') {
            return Err(MountError::GuestPath(spec.to_owned()));
        }
        Ok(Mount {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            read_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
