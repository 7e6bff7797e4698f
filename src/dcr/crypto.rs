//! Token generation, hashing, sealing of upstream tokens, and signatures for cookies and forms.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::config::decode_encryption_key;

/// Prefix of the access tokens the bridge issues to MCP hosts. Only tokens with this prefix are
/// looked up by [`ProxyTokenVerifier`](super::ProxyTokenVerifier); A3's JWTs never start with it,
/// so [`DcrBridge::token_verifier`](super::DcrBridge::token_verifier) knows which verifier a token
/// belongs to without trying both.
///
/// The prefixes also let secret scanners and log filters recognise the bridge's credentials:
///
/// ```
/// use a3_mcp_auth::dcr::{ACCESS_TOKEN_PREFIX, CODE_PREFIX, REFRESH_TOKEN_PREFIX};
///
/// /// Masks the bridge's tokens and codes in a line before it is logged.
/// fn redact(line: &str) -> String {
///     let secret = |word: &str| {
///         [ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, CODE_PREFIX]
///             .iter()
///             .any(|prefix| word.trim_start_matches("code=").starts_with(prefix))
///     };
///     line.split(' ')
///         .map(|word| if secret(word) { "[redacted]" } else { word })
///         .collect::<Vec<_>>()
///         .join(" ")
/// }
///
/// let line = format!("GET /cb?x code={CODE_PREFIX}q1w2e3 then Bearer {ACCESS_TOKEN_PREFIX}r4t5");
/// assert_eq!(redact(&line), "GET /cb?x [redacted] then Bearer [redacted]");
/// ```
pub const ACCESS_TOKEN_PREFIX: &str = "a3mcp_at_";
/// Prefix of the refresh tokens the bridge issues to MCP hosts. A refresh token presented as a
/// bearer token is refused outright: it is never looked up as an access token nor handed to the
/// verifier of A3's tokens.
///
/// ```
/// use a3_mcp_auth::{A3Config, TokenVerifier};
/// use a3_mcp_auth::dcr::{DcrBridge, REFRESH_TOKEN_PREFIX};
/// use a3_mcp_auth::dcr::store::MemoryStore;
/// use a3_mcp_auth::testing::TestIssuer;
/// use a3_mcp_auth::verifier::VerifyError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
/// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
/// let refresh_token = format!("{REFRESH_TOKEN_PREFIX}stolen-from-a-host");
/// let refused = bridge.token_verifier().verify(&refresh_token).await.unwrap_err();
/// assert_eq!(refused, VerifyError::invalid("not an access token"));
/// # }
/// ```
pub const REFRESH_TOKEN_PREFIX: &str = "a3mcp_rt_";
/// Prefix of the authorization codes the bridge issues to MCP hosts. Codes travel in the redirect
/// to the host, so they show up in browser history and access logs: the prefix lets a log filter
/// find them (see [`ACCESS_TOKEN_PREFIX`] for one), and a code presented as a bearer token is
/// refused like a [refresh token](REFRESH_TOKEN_PREFIX).
///
/// ```
/// use a3_mcp_auth::dcr::CODE_PREFIX;
///
/// // The query of a redirect the bridge sent to a host, as an access log recorded it:
/// let logged = format!("/callback?code={CODE_PREFIX}Zm9vYmFy&state=xyz&iss=http%3A%2F%2F127.0.0.1%3A8000");
/// let code = logged.split(['?', '&']).find_map(|p| p.strip_prefix("code=")).unwrap();
/// assert!(code.starts_with(CODE_PREFIX), "a bridge code leaked into the log");
/// ```
pub const CODE_PREFIX: &str = "a3mcp_code_";

/// Bytes of randomness, and of MAC, in the secret of a grant token (together 256 bits, 43
/// base64url characters like every other token).
const GRANT_TOKEN_HALF: usize = 16;

/// Length in bytes of the key that seals upstream tokens and signs cookies.
const KEY_LEN: usize = 32;

/// A fresh opaque token with a type prefix, e.g. `a3mcp_code_…`.
pub(crate) fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", crate::oauth::random_token())
}

/// The grant id that a token made by [`Keys::grant_token`] with `prefix` names; `None` for anything
/// else (tokens issued by earlier versions had no grant id).
pub(crate) fn grant_of<'a>(token: &'a str, prefix: &str) -> Option<&'a str> {
    let (grant_id, secret) = token.strip_prefix(prefix)?.split_once('.')?;
    let well_formed = |s: &str| {
        s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (well_formed(grant_id) && well_formed(secret)).then_some(grant_id)
}

/// The bridge's secret key material: an AEAD key for upstream tokens at rest and an HMAC key for
/// cookies and consent forms, both derived from one 32-byte master key.
#[derive(Clone)]
pub(crate) struct Keys {
    aead: std::sync::Arc<LessSafeKey>,
    mac: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("TOKEN_ENCRYPTION_KEY must be base64 of exactly 32 bytes")]
    Malformed,
    #[error("key file {path}: {reason}")]
    File { path: String, reason: String },
}

impl Keys {
    pub(crate) fn from_master(master: &[u8; KEY_LEN]) -> Self {
        let derive = |label: &[u8]| {
            let k = hmac::Key::new(hmac::HMAC_SHA256, master);
            hmac::sign(&k, label)
        };
        let aead_key = derive(b"a3-mcp-auth dcr aead v1");
        let mac_key = derive(b"a3-mcp-auth dcr mac v1");
        let unbound = UnboundKey::new(&AES_256_GCM, aead_key.as_ref()).expect("32-byte AES key");
        Keys {
            aead: std::sync::Arc::new(LessSafeKey::new(unbound)),
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()),
        }
    }

    /// A random key that lives as long as the process.
    pub(crate) fn ephemeral() -> Self {
        Self::from_master(&crate::oauth::random_bytes::<KEY_LEN>())
    }

    /// Parses a base64 (standard or URL-safe) 32-byte key.
    pub(crate) fn from_base64(value: &str) -> Result<Self, KeyError> {
        let master = decode_encryption_key(value).ok_or(KeyError::Malformed)?;
        Ok(Self::from_master(&master))
    }

    /// Reads the key file at `path`, or creates it (mode 0600) with a random key.
    pub(crate) fn load_or_create_file(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::File {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                super::files::warn_if_shared(path);
                Self::from_base64(&text).map_err(|e| err(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let master = crate::oauth::random_bytes::<KEY_LEN>();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    super::files::create_private_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut file = super::files::private_file()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| err(e.to_string()))?;
                std::io::Write::write_all(&mut file, STANDARD.encode(master).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Ok(Self::from_master(&master))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Encrypts `plaintext` with AES-256-GCM under a random nonce; `aad` binds it to its owner.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = crate::oauth::random_bytes::<NONCE_LEN>();
        let mut out = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out)
            .expect("AES-GCM sealing of a small buffer cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        sealed
    }

    /// Decrypts what [`Keys::seal`] produced with the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = self.aead.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
        Some(plain.to_vec())
    }

    /// A fresh access or refresh token of the grant `grant_id`: `{prefix}{grant id}.{secret}`,
    /// where the secret is 128 random bits and 128 bits of our MAC over them, the prefix and the
    /// grant. Naming the grant lets the grant itself hold the hashes of its few live tokens (no
    /// entry per token), and lets a refresh token that is neither the grant's current nor its
    /// previous one be recognised as reuse however old it is; the MAC makes that recognition
    /// need a token we issued, so whoever learns a grant id (the admin API shows them) cannot
    /// end the grant with a made-up token ([`Keys::issued_grant_token`]).
    pub(crate) fn grant_token(&self, prefix: &str, grant_id: &str) -> String {
        let nonce = crate::oauth::random_bytes::<GRANT_TOKEN_HALF>();
        let mut secret = nonce.to_vec();
        secret.extend_from_slice(&self.grant_token_tag(prefix, grant_id, &nonce));
        format!("{prefix}{grant_id}.{}", URL_SAFE_NO_PAD.encode(secret))
    }

    /// Whether `token` was made by [`Keys::grant_token`] with `prefix` under this key (constant
    /// time).
    pub(crate) fn issued_grant_token(&self, token: &str, prefix: &str) -> bool {
        let Some(grant_id) = grant_of(token, prefix) else {
            return false;
        };
        let secret = &token[prefix.len() + grant_id.len() + 1..];
        match URL_SAFE_NO_PAD.decode(secret) {
            Ok(bytes) if bytes.len() == 2 * GRANT_TOKEN_HALF => {
                let (nonce, tag) = bytes.split_at(GRANT_TOKEN_HALF);
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    &self.grant_token_tag(prefix, grant_id, nonce),
                    tag,
                )
                .is_ok()
            }
            _ => false,
        }
    }

    fn grant_token_tag(&self, prefix: &str, grant_id: &str, nonce: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(b"a3-mcp-auth grant token v1\0");
        ctx.update(prefix.as_bytes());
        ctx.update(grant_id.as_bytes());
        ctx.update(b".");
        ctx.update(nonce);
        ctx.sign().as_ref()[..GRANT_TOKEN_HALF].to_vec()
    }

    /// HMAC-SHA256 of `data`, base64url.
    pub(crate) fn sign(&self, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.mac, data.as_bytes()))
    }

    /// Whether `signature` is [`Keys::sign`] of `data` (constant time).
    pub(crate) fn verify(&self, data: &str, signature: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(signature) {
            Ok(tag) => hmac::verify(&self.mac, data.as_bytes(), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_aad_binding() {
        let keys = Keys::ephemeral();
        let sealed = keys.seal(b"grant-1", b"secret upstream token");
        assert_eq!(keys.open(b"grant-1", &sealed).unwrap(), b"secret upstream token");
        assert!(keys.open(b"grant-2", &sealed).is_none());
        assert!(Keys::ephemeral().open(b"grant-1", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keys.open(b"grant-1", &tampered).is_none());
        assert_ne!(
            keys.seal(b"grant-1", b"x"),
            keys.seal(b"grant-1", b"x"),
            "nonces are random"
        );
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token(CODE_PREFIX);
        assert!(a.starts_with("a3mcp_code_") && a.len() == 11 + 43);
        assert_ne!(a, new_token(CODE_PREFIX));
        assert!(!crate::oauth::sha256_b64url(&a).contains(&a[11..]));
    }

    #[test]
    fn grant_tokens_name_their_grant() {
        let keys = Keys::ephemeral();
        let grant = crate::oauth::random_token();
        let at = keys.grant_token(ACCESS_TOKEN_PREFIX, &grant);
        assert!(at.starts_with(&format!("a3mcp_at_{grant}.")) && at.len() == 9 + 43 + 1 + 43);
        assert_ne!(at, keys.grant_token(ACCESS_TOKEN_PREFIX, &grant));
        assert_eq!(grant_of(&at, ACCESS_TOKEN_PREFIX), Some(grant.as_str()));
        assert_eq!(
            grant_of(&at, REFRESH_TOKEN_PREFIX),
            None,
            "the prefix is part of the type"
        );
        let rt = keys.grant_token(REFRESH_TOKEN_PREFIX, &grant);
        assert_eq!(grant_of(&rt, REFRESH_TOKEN_PREFIX), Some(grant.as_str()));
        // Only tokens made under this key, for this prefix and grant, are ours.
        assert!(keys.issued_grant_token(&rt, REFRESH_TOKEN_PREFIX));
        assert!(keys.issued_grant_token(&at, ACCESS_TOKEN_PREFIX));
        assert!(!keys.issued_grant_token(&rt, ACCESS_TOKEN_PREFIX));
        assert!(!Keys::ephemeral().issued_grant_token(&rt, REFRESH_TOKEN_PREFIX));
        let made_up = format!("{REFRESH_TOKEN_PREFIX}{grant}.{}", crate::oauth::random_token());
        assert_eq!(grant_of(&made_up, REFRESH_TOKEN_PREFIX), Some(grant.as_str()));
        assert!(!keys.issued_grant_token(&made_up, REFRESH_TOKEN_PREFIX));
        let other_grant = rt.replace(&grant, &crate::oauth::random_token());
        assert!(!keys.issued_grant_token(&other_grant, REFRESH_TOKEN_PREFIX));
        for malformed in [
            new_token(ACCESS_TOKEN_PREFIX),
            format!("{ACCESS_TOKEN_PREFIX}{grant}."),
            format!("{ACCESS_TOKEN_PREFIX}../../x.{grant}"),
            format!("{ACCESS_TOKEN_PREFIX}{grant}.{grant}.{grant}"),
            format!("{ACCESS_TOKEN_PREFIX}{}.{grant}", "a:".repeat(21) + "a"),
        ] {
            assert_eq!(grant_of(&malformed, ACCESS_TOKEN_PREFIX), None, "{malformed}");
        }
    }

    #[test]
    fn signatures() {
        let keys = Keys::ephemeral();
        let sig = keys.sign("tx:abc");
        assert!(keys.verify("tx:abc", &sig));
        assert!(!keys.verify("tx:abd", &sig));
        assert!(!Keys::ephemeral().verify("tx:abc", &sig));
    }

    #[test]
    fn key_file_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let k1 = Keys::load_or_create_file(&path).unwrap();
        let k2 = Keys::load_or_create_file(&path).unwrap();
        let sealed = k1.seal(b"a", b"b");
        assert_eq!(k2.open(b"a", &sealed).unwrap(), b"b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("sub")), 0o700, "the directory it created");
        }
        assert!(Keys::from_base64("c2hvcnQ=").is_err());
    }
}
