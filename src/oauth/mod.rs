//! What an OAuth server needs in more than one place: the DCR bridge ([`crate::dcr`]) and the
//! development issuer both serve authorization, token and revocation endpoints, and share one
//! copy of each helper here.
//!
//! - [`form`]: token and revocation request bodies (RFC 6749 §3.1, §3.2);
//! - [`response`]: RFC 6749 §5.2 JSON errors, `no-store`, redirects;
//! - [`html`]: the HTML page shell (CSP, no framing) and escaping;
//! - [`pkce`]: RFC 7636 syntax and the S256 transform;
//! - here: random values, hashes, constant-time comparison, Unix time and media types.

pub(crate) mod form;
pub(crate) mod html;
pub(crate) mod pkce;
pub(crate) mod response;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, header};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The Unix time `ttl` from now, saturating: a huge `expires_in` or configured lifetime means
/// "never", not an overflow.
pub(crate) fn expiry_after(ttl: Duration) -> u64 {
    unix_now().saturating_add(ttl.as_secs())
}

/// `N` random bytes from the system CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).expect("the system random number generator works");
    buf
}

/// A random URL-safe value with 256 bits of entropy (43 characters): ids, codes, tokens, CSRF
/// values, PKCE verifiers.
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 of `value`, base64url without padding. What stores keep instead of a token or code,
/// and, applied to a PKCE verifier, its S256 challenge (RFC 7636 §4.2).
pub(crate) fn sha256_b64url(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, value.as_bytes()))
}

/// Whether two secrets are equal, in constant time. The SHA-256 digests are compared, so the
/// time does not depend on where they differ nor reveal the secret's length.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    let digest = |s: &str| digest::digest(&digest::SHA256, s.as_bytes());
    constant_time::verify_slices_are_equal(digest(a).as_ref(), digest(b).as_ref()).is_ok()
}

/// Whether the request's `Content-Type` is `media_type`, whatever its parameters (`charset`).
pub(crate) fn content_type_is(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_distinct_and_url_safe() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn constant_time_comparison_of_any_lengths() {
        assert!(ct_eq("secret", "secret"));
        assert!(!ct_eq("secret", "secreT"));
        assert!(!ct_eq("secret", "secret-and-more"));
        assert!(!ct_eq("", "x"));
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(v));
            h
        };
        assert!(content_type_is(&with("application/json"), "application/json"));
        assert!(content_type_is(
            &with("Application/JSON; charset=utf-8"),
            "application/json"
        ));
        assert!(!content_type_is(
            &with("text/plain;charset=UTF-8"),
            "application/json"
        ));
        assert!(!content_type_is(&with("application/jsonx"), "application/json"));
        assert!(!content_type_is(&HeaderMap::new(), "application/json"));
    }

    #[test]
    fn expiry_saturates() {
        assert!(expiry_after(Duration::from_secs(60)) >= unix_now() + 59);
        assert_eq!(expiry_after(Duration::MAX), u64::MAX);
    }
}
