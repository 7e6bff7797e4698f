//! The development issuer's own copies of the OAuth helpers (to be replaced by `crate::oauth`).

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use url::Url;

use super::pages::error_page;
use super::state::Digest;

/// Request parameters; repeated parameters are refused and empty ones count as absent
/// (RFC 6749 §3.1).
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn parse(input: &[u8]) -> Result<Params, String> {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map
                .insert(name.clone().into_owned(), value.into_owned())
                .is_some()
            {
                return Err(format!("parameter {name:?} is repeated"));
            }
        }
        Ok(Params(map))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

pub(super) fn hash(value: &str) -> Digest {
    digest(&SHA256, value.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Compares two secrets in constant time (over their SHA-256 digests, so lengths do not leak).
pub(super) fn secrets_equal(a: &str, b: &str) -> bool {
    verify_slices_are_equal(&hash(a), &hash(b)).is_ok()
}

pub(super) fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("system randomness");
    URL_SAFE_NO_PAD.encode(buffer)
}

pub(super) fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub(super) fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

/// A 303 to `uri` with `params` added to its query.
pub(super) fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(uri) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "the redirect URI is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the redirect URI is not a valid header",
        );
    };
    no_store((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn parses_params_refusing_repeats_and_dropping_empty_values() {
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(
            (p.get("a"), p.get("b"), p.get("c")),
            (Some("1"), None, Some("x y"))
        );
        assert!(Params::parse(b"a=1&a=2").is_err());
    }

    #[test]
    fn checks_code_verifier_syntax() {
        assert!(is_code_verifier(&"a".repeat(43)));
        assert!(is_code_verifier(&format!("{}-._~", "Z9".repeat(30))));
        assert!(!is_code_verifier(&"a".repeat(42)));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn compares_secrets() {
        assert!(secrets_equal("secret", "secret"));
        assert!(!secrets_equal("secret", "secreT"));
        assert!(!secrets_equal("secret", "secret "));
    }
}
