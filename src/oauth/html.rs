//! HTML pages of the authorization servers (consent, sign-in, errors): one shell with the
//! headers every such page needs, escaping, the text a page may show of what others chose, and
//! the check that a form post comes from the server's own page.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};
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

/// Combining marks kept in a row: enough for every script's stacked diacritics, too few for the
/// "Zalgo" piles that spill over the lines above and below.
const MAX_COMBINING_RUN: usize = 3;

/// `text` reduced to what a reader sees, for names that someone else chose (a client's
/// `client_name`, an account name) before a page shows them.
///
/// Dropped: controls, format characters (general category Cf: the bidi overrides and isolates
/// U+202A–U+202E and U+2066–U+2069 that reorder what follows, the zero-width U+200B–U+200F,
/// U+FEFF, tag characters, …), every other default-ignorable code point (variation selectors,
/// Hangul fillers, U+034F, …), private-use, surrogate and unassigned code points, and combining
/// marks beyond [`MAX_COMBINING_RUN`] in a row. Line and paragraph separators and every run of
/// white space become one space, trimmed at both ends. What remains is visible, so a name cannot
/// hide or rearrange text, nor pass for another by differences nobody can see
/// ([Unicode TR 36 §2](https://www.unicode.org/reports/tr36/#visual_spoofing)). Letters that look
/// alike across scripts stay: pages say that a client's name is its own claim.
pub(crate) fn visible_text(text: &str) -> String {
    let category = CodePointMapData::<GeneralCategory>::new();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let mut out = String::with_capacity(text.len());
    let mut marks = 0;
    for c in text.chars() {
        let gc = category.get(c);
        if GeneralCategoryGroup::Separator.contains(gc) || c.is_whitespace() {
            marks = 0;
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            continue;
        }
        if GeneralCategoryGroup::Other.contains(gc) || ignorable.contains(c) {
            continue;
        }
        if GeneralCategoryGroup::Mark.contains(gc) && gc != GeneralCategory::SpacingMark {
            marks += 1;
            if marks > MAX_COMBINING_RUN {
                continue;
            }
        } else {
            marks = 0;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Whether a form post comes from the server's own page at `origin` (e.g.
/// `http://127.0.0.1:8000`): `Sec-Fetch-Site`, when sent, is `same-origin` (or `none`, the user's
/// own navigation), and `Origin`, when sent, is `origin`.
///
/// Browsers send both on every form post and a page cannot forge them. A page on another port
/// of the same host is `same-site`, not `same-origin`, so it is refused too, although it shares
/// our cookies ([RFC 6265 §8.5](https://www.rfc-editor.org/rfc/rfc6265#section-8.5)): this,
/// not a cookie, is what tells our own page from any other. Clients that are not browsers send
/// neither header; they have no cookies of a victim to ride on.
pub(crate) fn same_origin_post(headers: &HeaderMap, origin: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    headers
        .get_all(header::ORIGIN)
        .iter()
        .all(|o| o.to_str().is_ok_and(|o| o == origin))
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

    /// Every kind of character that hides or rearranges text goes; what can be seen stays.
    #[test]
    fn visible_text_keeps_only_what_a_reader_sees() {
        for (hostile, seen) in [
            // Right-to-left override: "Code" would read backwards after it.
            ("Visual Studio \u{202e}edoC", "Visual Studio edoC"),
            // Isolates, zero-width space, joiners, marks, BOM, soft hyphen, word joiner.
            (
                "\u{2066}Visual\u{2069} St\u{200b}u\u{200d}d\u{200e}i\u{200f}o\u{feff}\u{ad}\u{2060}",
                "Visual Studio",
            ),
            // Tag characters (an invisible second text), variation selectors, Hangul fillers.
            ("VS\u{e0041}\u{e0042}\u{fe0f} Code\u{3164}\u{115f}", "VS Code"),
            // Private-use and unassigned code points, controls; separators become one space.
            (
                "A\u{e000}\u{10ffff}\u{378}\u{7}B\u{2028}C\u{2029}\t\n  D\u{a0}E",
                "AB C D E",
            ),
            // Combining marks: three in a row at most.
            ("e\u{301}\u{302}\u{303}\u{304}\u{305}x", "e\u{301}\u{302}\u{303}x"),
            ("  \u{200b} ", ""),
        ] {
            assert_eq!(visible_text(hostile), seen, "{hostile:?}");
        }
        // Other scripts, spacing marks and emoji are text like any other.
        for kept in ["Ελληνικά", "עברית", "日本語", "हिन्दी", "Café ☕"] {
            assert_eq!(visible_text(kept), kept);
        }
    }

    #[test]
    fn a_form_post_is_our_own_only_with_our_origin_and_same_origin_fetch() {
        let ours = "http://127.0.0.1:8000";
        let post = |headers: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in headers {
                h.append(*name, HeaderValue::from_static(value));
            }
            same_origin_post(&h, ours)
        };
        assert!(post(&[("origin", ours), ("sec-fetch-site", "same-origin")]));
        assert!(post(&[("sec-fetch-site", "none")]));
        assert!(post(&[]), "not a browser");
        // Another port of the same host: the same site, another origin.
        assert!(!post(&[
            ("origin", "http://127.0.0.1:9999"),
            ("sec-fetch-site", "same-site")
        ]));
        assert!(!post(&[("origin", "http://127.0.0.1:9999")]));
        assert!(!post(&[("sec-fetch-site", "same-site")]));
        assert!(!post(&[("origin", "null")]));
        assert!(!post(&[("origin", ours), ("origin", "http://evil.example")]));
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
