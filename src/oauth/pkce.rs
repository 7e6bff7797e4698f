//! PKCE (RFC 7636) as an authorization server checks it: S256 only (OAuth 2.1 §4.1.1).

/// Whether `s` has the syntax of a code verifier (RFC 7636 §4.1): 43 to 128 characters of
/// `[A-Za-z0-9-._~]`.
pub(crate) fn is_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `s` can be an S256 code challenge: the base64url SHA-256 of a verifier is exactly 43
/// characters of the base64url alphabet.
pub(crate) fn is_s256_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The S256 challenge of `verifier` (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    super::sha256_b64url(verifier)
}

/// Whether `verifier` is well formed and its S256 transform is `challenge` (constant time).
pub(crate) fn verify_s256(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier) && super::ct_eq(&s256(verifier), challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verify_s256(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verify_s256(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn verifier_syntax() {
        assert!(is_verifier("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(is_verifier(&"a".repeat(128)));
        assert!(is_verifier("abc.def~ghi_jkl-mno.pqr~stu_vwx-yz0.123~456_7"));
        assert!(!is_verifier(&"a".repeat(42)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
        assert!(!is_verifier("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw cM"));
    }

    #[test]
    fn challenge_syntax() {
        assert!(is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        // A verifier's alphabet is wider than base64url: '.' and '~' cannot be in a digest.
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw.cM"));
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw=cM"));
    }
}
