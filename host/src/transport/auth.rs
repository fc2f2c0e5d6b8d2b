//! Shared-secret authentication by challenge and response: the server sends
//! random bytes, the client answers with HMAC-SHA256(token, bytes). The token
//! never crosses the wire.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable naming the token file when no flag does.
pub const TOKEN_FILE_ENV: &str = "PUSHY_TOKEN_FILE";

/// Length of a challenge.
pub const CHALLENGE_LEN: usize = 32;

/// A token file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the token file {}", path.display())]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A shared secret, read from a file.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

impl Token {
    /// Reads a token file (surrounding whitespace is ignored). A file that
    /// others may read is accepted with a warning: it is a secret.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let fail = |source| TokenError {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read(path).map_err(fail)?;
        let trimmed = text.trim_ascii();
        if trimmed.len() < 16 {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a token must have at least 16 bytes",
            )));
        }
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the token file can be read by other users; chmod 600 it"
            );
        }
        Ok(Token(trimmed.to_vec()))
    }

    /// The token named by `flag`, else by `$PUSHY_TOKEN_FILE`, else none.
    pub fn from_flag_or_env(flag: Option<&Path>) -> Result<Option<Token>, TokenError> {
        let path = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(TOKEN_FILE_ENV).map(PathBuf::from));
        path.map(|p| Token::from_file(&p)).transpose()
    }

    /// The response to `challenge`.
    pub fn prove(&self, challenge: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"pushy-auth-v1:");
        mac.update(challenge);
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a response in constant time.
    pub fn verify(&self, challenge: &[u8], proof: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"pushy-auth-v1:");
        mac.update(challenge);
        mac.verify_slice(proof).is_ok()
    }
}

/// Fresh random bytes for a challenge.
pub fn challenge() -> Vec<u8> {
    let mut bytes = vec![0u8; CHALLENGE_LEN];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_token_and_challenge() {
        let token = Token(b"0123456789abcdef-secret".to_vec());
        let other = Token(b"0123456789abcdef-other!".to_vec());
        let c = challenge();
        let proof = token.prove(&c);
        assert!(token.verify(&c, &proof));
        assert!(!other.verify(&c, &proof));
        assert!(!token.verify(&challenge(), &proof));
        assert!(!token.verify(&c, &proof[..31]));
    }

    #[test]
    fn short_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "short\n").unwrap();
        assert!(Token::from_file(&path).is_err());
        std::fs::write(&path, "  a-long-enough-secret-token \n").unwrap();
        let token = Token::from_file(&path).unwrap();
        assert_eq!(token.0, b"a-long-enough-secret-token");
    }
}
