//! [`JwtVerifier`]: A3's RS256 access tokens, checked against the issuer's JWKS.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use serde_json::{Map, Value};

use crate::claims::Claims;
use crate::config::A3Config;
use crate::discovery::{DiscoveryError, ProviderMetadata};
use crate::jwks::KeyLookupError;
use crate::jwks::{JwksKeyStore, JwksPolicy};
use crate::verifier::{TokenVerifier, VerifyError};

/// Installs jsonwebtoken's aws-lc-rs provider for this process. [`JwtVerifier`] calls it when it
/// is built; call it yourself only if you use jsonwebtoken directly before that.
///
/// ```
/// assert!(a3_mcp_auth::jwt::install_crypto_provider());
/// assert!(a3_mcp_auth::jwt::install_crypto_provider(), "idempotent");
/// ```
///
/// jsonwebtoken panics on first use when no provider (or both) is selected; installing ours
/// explicitly turns a wrong feature set into a compile error instead (`crypto::aws_lc` only
/// exists with the `aws_lc_rs` feature). Calling it again is harmless.
///
/// Returns `false` when another provider was installed first (by another crate in the process);
/// verifiers refuse to build then, rather than panic or run on another backend later.
pub fn install_crypto_provider() -> bool {
    use jsonwebtoken::crypto::{CryptoProvider, aws_lc::DEFAULT_PROVIDER};
    match CryptoProvider::install_default(&DEFAULT_PROVIDER) {
        Ok(()) => true,
        Err(installed) => std::ptr::eq(installed, &DEFAULT_PROVIDER),
    }
}

/// Tokens are cached for at most this long, so a key removed from the JWKS or a changed
/// configuration takes effect within it even for long-lived tokens.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// Verifies A3 access tokens (JWTs) for one resource.
///
/// Checks, in order: the header's `alg` is on the allow-list (RS256 by default; `none` and HMAC
/// algorithms can never be allowed), no `crit` extensions, the signing key is in the issuer's JWKS
/// (looked up by `kid`; keys named by `jku`/`x5u`/`jwk` are never used) and its own `alg` matches,
/// the signature, `iss` equals the issuer exactly, `aud` contains the resource URI, `exp` is
/// present and not passed, `nbf` and `iat` are not in the future (all with a small leeway).
///
/// Validated tokens are cached by their SHA-256 (never the raw token), until their `exp` and at
/// most five minutes; `exp` is checked again on every hit.
///
/// ```
/// use a3_mcp_auth::{JwtVerifier, TokenVerifier};
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let verifier = JwtVerifier::builder(issuer.url(), resource).discover().await.unwrap();
///
/// let token = issuer.token(resource).subject("johndoe").scope("mcp:call").sign();
/// let claims = verifier.verify(&token).await.unwrap();
/// assert_eq!(claims.subject(), Some("johndoe"));
///
/// let elsewhere = issuer.token("http://127.0.0.1:9999/other").sign();
/// assert!(verifier.verify(&elsewhere).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: JwksKeyStore,
    /// One prepared validation per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
    cache: Option<Cache<[u8; 32], CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    claims: Claims,
    exp: u64,
    generation: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

/// Builder for [`JwtVerifier`].
#[derive(Clone, Debug)]
pub struct JwtVerifierBuilder {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    cache_capacity: u64,
    policy: JwksPolicy,
}

/// A [`JwtVerifier`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtVerifierError {
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The JWKS could not be fetched.
    #[error(transparent)]
    Jwks(#[from] crate::fetch::FetchError),
    /// Another jsonwebtoken crypto provider was installed before ours (see
    /// [`install_crypto_provider`]).
    #[error(
        "another jsonwebtoken CryptoProvider is installed in this process; a3-mcp-auth needs the aws_lc_rs one"
    )]
    CryptoProvider,
    /// An algorithm outside the asymmetric RSA family was allowed.
    #[error("algorithm {0:?} cannot be allowed: only RSA signatures (RS*/PS*) are verified")]
    Algorithm(Algorithm),
}

impl JwtVerifier {
    /// A builder for tokens from `issuer` (checked against `iss` exactly) for `audience`
    /// (the resource URI, which `aud` must contain).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::RS256],
            leeway: Duration::from_secs(30),
            cache_capacity: 10_000,
            policy: JwksPolicy::default(),
        }
    }

    /// Discovers the configured issuer and builds a verifier for the configured resource.
    pub async fn from_config(config: &A3Config) -> Result<Self, JwtVerifierError> {
        Self::builder(config.issuer(), config.resource_uri())
            .discover()
            .await
    }

    /// The key store behind this verifier.
    pub fn keys(&self) -> &JwksKeyStore {
        &self.inner.keys
    }

    /// Verifies without looking at or filling the cache.
    pub async fn verify_uncached(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_fresh(token).await.map(|(claims, _)| claims)
    }

    async fn verify_fresh(&self, token: &str) -> Result<(Claims, u64), VerifyError> {
        let result = self.check(token).await;
        match &result {
            Ok(_) => crate::metrics::jwt_verification("ok"),
            // Not a JWT: another verifier's token, counted by whoever takes it.
            Err((VerifyError::Unrecognized, _)) => {}
            Err((_, reason)) => crate::metrics::jwt_verification(reason),
        }
        result.map_err(|(e, _)| e)
    }

    /// The checks of [`verify_fresh`](Self::verify_fresh); a failure comes with its metrics label.
    async fn check(&self, token: &str) -> Result<(Claims, u64), (VerifyError, &'static str)> {
        let invalid =
            |reason: &'static str, description: &'static str| (VerifyError::invalid(description), reason);
        let header = jsonwebtoken::decode_header(token)
            // Not a JWS at all: leave it to another verifier (see `TokenVerifier::or`).
            .map_err(|_| (VerifyError::Unrecognized, "malformed"))?;
        let Some((_, validation)) = self.inner.validations.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(invalid("algorithm", "signing algorithm not allowed"));
        };
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: we understand no extensions, so any critical one is fatal.
            return Err(invalid("malformed", "unsupported critical header"));
        }
        let key = self
            .inner
            .keys
            .key(header.kid.as_deref())
            .await
            .map_err(|e| match e {
                KeyLookupError::UnknownKey => invalid("unknown_key", "unknown signing key"),
                KeyLookupError::Unavailable(retry_after) => {
                    (VerifyError::Unavailable { retry_after }, "keys_unavailable")
                }
            })?;
        if key.algorithm != header.alg {
            return Err(invalid("algorithm", "signing algorithm does not match the key"));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation).map_err(|e| {
            let (reason, description) = match e.kind() {
                ErrorKind::ExpiredSignature => ("expired", "the token has expired"),
                ErrorKind::ImmatureSignature => ("not_yet_valid", "the token is not valid yet"),
                ErrorKind::InvalidIssuer => ("wrong_issuer", "the token was issued by another issuer"),
                ErrorKind::InvalidAudience => ("wrong_audience", "the token was issued for another resource"),
                ErrorKind::InvalidSignature => ("bad_signature", "bad signature"),
                ErrorKind::MissingRequiredClaim(c) if c == "exp" => {
                    ("malformed", "the token has no exp claim")
                }
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                    ("wrong_audience", "the token has no aud claim")
                }
                ErrorKind::MissingRequiredClaim(c) if c == "sub" => {
                    ("malformed", "the token has no sub claim")
                }
                ErrorKind::MissingRequiredClaim(_) => ("malformed", "the token lacks a required claim"),
                ErrorKind::InvalidClaimFormat(_) => ("malformed", "a time or audience claim is malformed"),
                _ => ("malformed", "malformed token"),
            };
            invalid(reason, description)
        })?;
        let now = now();
        let claims = data.claims;
        if claims.contains_key("cnf") {
            // A sender-constrained token (DPoP, mTLS) must not be accepted as a plain bearer token.
            return Err(invalid(
                "malformed",
                "sender-constrained tokens (cnf) are not accepted here",
            ));
        }
        match claims.get("iat") {
            None => {}
            Some(iat) => match iat.as_f64() {
                Some(iat) if iat <= now.saturating_add(self.inner.leeway) as f64 => {}
                _ => {
                    return Err(invalid(
                        "not_yet_valid",
                        "the token's iat is invalid or in the future",
                    ));
                }
            },
        }
        // `decode` required `exp` and checked it; it is a number here.
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as u64;
        Ok((Claims::from_map(claims), exp))
    }
}

impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let Some(cache) = &self.inner.cache else {
            return self.verify_uncached(token).await;
        };
        let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let generation = self.inner.keys.generation();
        if let Some(hit) = cache.get(&digest) {
            if hit.generation == generation && now() < hit.exp.saturating_add(self.inner.leeway) {
                crate::metrics::jwt_cache(true);
                return Ok(hit.claims);
            }
            cache.invalidate(&digest);
        }
        crate::metrics::jwt_cache(false);
        let (claims, exp) = self.verify_fresh(token).await?;
        cache.insert(
            digest,
            CachedToken {
                claims: claims.clone(),
                exp,
                generation,
            },
        );
        Ok(claims)
    }
}

impl JwtVerifierBuilder {
    /// Allowed signing algorithms (default RS256). Only RSA algorithms can be allowed: a JWKS
    /// public key must never double as an HMAC secret.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(Duration::from_secs(300));
        self
    }

    /// Maximum number of cached validated tokens (default 10 000; 0 turns the cache off).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// How the JWKS is fetched and refreshed.
    pub fn jwks_policy(mut self, policy: JwksPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Discovers the issuer (`{issuer}/.well-known/openid-configuration`), fetches its JWKS and
    /// builds the verifier.
    pub async fn discover(self) -> Result<JwtVerifier, JwtVerifierError> {
        let metadata = ProviderMetadata::discover(&self.issuer).await?;
        self.jwks_uri(&metadata.jwks_uri).await
    }

    /// Fetches the JWKS at `jwks_uri` (skipping discovery) and builds the verifier.
    pub async fn jwks_uri(self, jwks_uri: &str) -> Result<JwtVerifier, JwtVerifierError> {
        self.check_algorithms()?;
        let keys = JwksKeyStore::fetch(jwks_uri, self.policy.clone()).await?;
        self.with_keys(keys)
    }

    /// Builds the verifier over an existing key store.
    pub fn with_keys(self, keys: JwksKeyStore) -> Result<JwtVerifier, JwtVerifierError> {
        self.check_algorithms()?;
        if !install_crypto_provider() {
            return Err(JwtVerifierError::CryptoProvider);
        }
        let validations = self
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[&self.issuer]);
                v.set_audience(&[&self.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                v.leeway = self.leeway.as_secs();
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        let cache = (self.cache_capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(self.cache_capacity)
                .expire_after(ExpireAtExp)
                .build()
        });
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                keys,
                validations,
                leeway: self.leeway.as_secs(),
                cache,
            }),
        })
    }

    fn check_algorithms(&self) -> Result<(), JwtVerifierError> {
        match self.algorithms.iter().find(|a| {
            !matches!(
                a,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            )
        }) {
            Some(&bad) => Err(JwtVerifierError::Algorithm(bad)),
            None if self.algorithms.is_empty() => Err(JwtVerifierError::Algorithm(Algorithm::HS256)),
            None => Ok(()),
        }
    }
}

/// Cache entries live until the token's `exp`, and never longer than [`MAX_CACHE_TTL`].
struct ExpireAtExp;

impl moka::Expiry<[u8; 32], CachedToken> for ExpireAtExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &CachedToken,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.exp.saturating_sub(now())).min(MAX_CACHE_TTL))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
