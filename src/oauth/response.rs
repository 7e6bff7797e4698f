//! Responses of OAuth endpoints: RFC 6749 §5.2 JSON errors, `no-store`, redirects.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use url::Url;

/// Marks a response as not cacheable (RFC 6749 §5.1: responses with tokens or credentials).
pub(crate) fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The error code of a response made by [`oauth_error`], in its extensions: what the
/// endpoints' metrics count, without reading the body back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorCode(pub &'static str);

/// An RFC 6749 §5.2 (and RFC 7591 §3.2.2) JSON error, never cached. `description` is a fixed
/// phrase of the server's, never an echo of a secret.
pub(crate) fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut response = no_store(
        (
            status,
            axum::Json(serde_json::json!({"error": error, "error_description": description})),
        )
            .into_response(),
    );
    response.extensions_mut().insert(ErrorCode(error));
    response
}

/// The error code of `response` if [`oauth_error`] made it.
pub(crate) fn error_code(response: &Response) -> Option<&'static str> {
    response.extensions().get::<ErrorCode>().map(|c| c.0)
}

/// A `303 See Other` to `location`: not cacheable, and without a `Referer` (the URL of the page
/// that redirects may carry a code or state).
///
/// 303, not 302, for every redirect: after a form POST (a consent decision, a sign-in) only 303
/// guarantees that the browser follows with a GET and does not re-post the form to the next
/// site (RFC 9700 §4.12); after a GET the two mean the same.
pub(crate) fn see_other(location: &str) -> Response {
    let Ok(value) = HeaderValue::from_str(location) else {
        return super::html::error_page(StatusCode::BAD_GATEWAY, "The redirect target is not a valid URL.");
    };
    let mut response = no_store((StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response());
    response
        .headers_mut()
        .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A redirect to a validated redirect URI with `params` appended to its query (an
/// authorization response, RFC 6749 §4.1.2).
pub(crate) fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return super::html::error_page(StatusCode::BAD_REQUEST, "The redirect URI is invalid.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    see_other(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bridge answered 302 and the development issuer 303, and only the bridge withheld the
    /// `Referer`. Both now answer 303 without a referrer: the stricter of each.
    #[test]
    fn redirects_are_303_uncached_and_referrer_free() {
        let r = redirect_with("http://127.0.0.1:9/cb?keep=1", &[("code", "c"), ("state", "a b")]);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "http://127.0.0.1:9/cb?keep=1&code=c&state=a+b"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(redirect_with("not a url", &[]).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn errors_are_json_and_uncached() {
        let r = oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code is invalid");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::PRAGMA], "no-cache");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(error_code(&r), Some("invalid_grant"));
    }
}
