//! HTML pages of the authorization servers (consent, sign-in, errors): one shell with the
//! headers every such page needs, and escaping.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use url::Url;

/// Escapes text for HTML element content and quoted attribute values. Control characters are
/// dropped: nothing legitimate needs them on a page, and they can hide text.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}\
code{background:#f3f3f3;padding:0 .2rem}button{font-size:1rem;padding:.5rem 1.2rem;margin:1rem .5rem 0 0}\
label{display:block;margin:.75rem 0}input{display:block;width:100%;padding:.4rem}\
.dev{background:#fde68a;border:1px solid #b45309;padding:.5rem;border-radius:.25rem}.error{color:#b91c1c}";

/// A complete HTML document: `title` (escaped) and `body_html` (already safe HTML).
pub(crate) fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body_html}</main></body></html>",
        escape_html(title)
    )
}

/// An HTML response with the headers of every page: nothing loaded, forms posted only to
/// `'self'` and `form_action` (space-separated sources; `'none'` alone forbids every form), no
/// framing (`frame-ancestors 'none'` and `X-Frame-Options: DENY`), no caching, no sniffing.
///
/// The referrer policy is `same-origin`, not `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` with the page's own form POST (Fetch, "append a request Origin header"), and
/// the servers check that a form POST carries their own `Origin`.
pub(crate) fn html_response(status: StatusCode, body: String, form_action: &str) -> Response {
    // `'none'` must stand alone in a source list (browsers ignore it beside other sources).
    let form_action = if form_action == "'none'" {
        "'none'".to_owned()
    } else {
        format!("'self' {form_action}").trim_end().to_owned()
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        )),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A CSP source expression that allows `url` in `form-action`: its origin, or its scheme
/// (`vscode:`) when the origin is opaque.
///
/// A page whose form POST is answered with a redirect must allow the redirect's target too:
/// browsers apply `form-action` to the redirects that follow a form submission
/// ([CSP 3, `form-action`](https://www.w3.org/TR/CSP3/#directive-form-action)), and stop on the
/// page otherwise.
pub(crate) fn csp_source(url: &Url) -> String {
    match url.origin() {
        origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    }
}

/// An error page for what cannot be sent back to a validated redirect URI. `message` is
/// escaped.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = page(
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p class=\"error\">{}</p>\
<p>Close this window and try again from your application.</p>",
            escape_html(message)
        ),
    );
    html_response(status, body, "'none'")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bridge wrote `&#x27;` and dropped control characters; the development issuer wrote
    /// `&#39;` and kept them. Both now drop them: the stricter of the two.
    #[test]
    fn escaping_drops_control_characters() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>\u{7}\u{1b}[31m"),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;[31m"
        );
    }

    #[test]
    fn csp_sources_are_origins_or_schemes() {
        let source = |u: &str| csp_source(&Url::parse(u).unwrap());
        assert_eq!(
            source("http://127.0.0.1:8000/auth/callback?x=1"),
            "http://127.0.0.1:8000"
        );
        assert_eq!(source("https://a3.test/authorize"), "https://a3.test");
        assert_eq!(
            source("vscode://vscode.github-authentication/did-authenticate"),
            "vscode:"
        );
    }

    fn csp(r: &Response) -> String {
        r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The development issuer's pages had no `form-action`, `base-uri` or `nosniff`; every page
    /// now has the bridge's full set.
    #[test]
    fn every_page_forbids_framing_caching_and_foreign_forms() {
        let error = error_page(StatusCode::FORBIDDEN, "no");
        assert!(csp(&error).contains("form-action 'none';"), "{}", csp(&error));
        let consent = html_response(StatusCode::OK, String::new(), "http://a3.test");
        assert!(csp(&consent).contains("form-action 'self' http://a3.test;"));
        assert!(csp(&consent).contains("frame-ancestors 'none'"));
        assert!(csp(&consent).contains("base-uri 'none'"));
        assert_eq!(consent.headers()[header::REFERRER_POLICY], "same-origin");
        assert_eq!(consent.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(consent.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(consent.headers()[header::CACHE_CONTROL], "no-store");
        let same_origin_only = html_response(StatusCode::OK, String::new(), "");
        assert!(csp(&same_origin_only).contains("form-action 'self';"));
    }
}
