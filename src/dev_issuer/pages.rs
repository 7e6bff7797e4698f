//! The development issuer's HTML pages, on the shell every authorization-server page of the
//! crate shares ([`crate::oauth::html`]: escaping, CSP, no framing, no caching): the sign-in form
//! and the error page, each under a banner that says loudly that this is not Mekarge A3.

use axum::response::Response;
use http::StatusCode;
use url::Url;

use super::state::AuthRequest;
use crate::oauth::html::{csp_source, escape_html, html_response, page};

/// On top of every page, so that nobody takes the form for A3's sign-in (the shared stylesheet's
/// `.dev` class).
const BANNER: &str = "<p class=\"dev\">Development issuer: <strong>not Mekarge A3</strong>. \
For local development only.</p>";

/// An error page for what cannot be sent back to a validated redirect URI; it posts no form.
/// `message` is escaped.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "{BANNER}<h1>Authorization error</h1><p class=\"error\">{}</p>",
        escape_html(message)
    );
    html_response(status, page("Authorization error", &body), "'none'")
}

/// The sign-in form of the pending request `id`, with `email` filled in and `error` shown when
/// a previous attempt failed.
pub(super) fn login_page(
    status: StatusCode,
    id: &str,
    request: &AuthRequest,
    email: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    let body = format!(
        "{BANNER}<h1>Sign in</h1><p><strong>{client}</strong> asks for <strong>{scope}</strong> on \
         <strong>{resource}</strong>.</p>{error}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"request\" value=\"{id}\">\
         <label>E-mail <input name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{email}\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape_html(&request.client_id),
        scope = escape_html(&request.scope.join(" ")),
        resource = escape_html(&request.resource),
        id = escape_html(id),
        email = escape_html(email),
    );
    // `POST /login` answers with a redirect to the client's redirect URI, which `form-action`
    // must allow beside 'self'.
    let form_action = Url::parse(&request.redirect_uri)
        .map(|u| csp_source(&u))
        .unwrap_or_default();
    html_response(status, page("Sign in", &body), &form_action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "dev-proxy-client".into(),
            redirect_uri: "http://127.0.0.1:8000/auth/callback".into(),
            redirect_explicit: true,
            state: None,
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            resource: "http://127.0.0.1:8000/mcp".into(),
            scope: vec!["mcp:call".into()],
        }
    }

    async fn text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn header(response: &Response, name: http::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    /// The issuer's own `escape_html` wrote `&#39;` and kept control characters; the shared one
    /// writes `&#x27;` and drops them (they can hide or fake text on a page).
    #[tokio::test]
    async fn echoed_values_lose_their_control_characters() {
        let email = "o'brien\u{1b}[8m@test.com\u{7}";
        let page = text(login_page(
            StatusCode::UNAUTHORIZED,
            "id",
            &request(),
            email,
            Some("no"),
        ))
        .await;
        assert!(page.contains("value=\"o&#x27;brien[8m@test.com\""), "{page}");
        assert!(!page.chars().any(|c| c.is_control()));
        let page = text(error_page(
            StatusCode::BAD_REQUEST,
            "unknown client \"<x>\u{1b}\"",
        ))
        .await;
        assert!(page.contains("unknown client &quot;&lt;x&gt;&quot;"), "{page}");
    }

    /// The issuer's own page shell had no `form-action` (any form, any redirect after it), no
    /// `base-uri` and no `nosniff`. Its pages now have the shared set: the error page posts
    /// nowhere, and the sign-in form only to itself and, through the redirect that answers it,
    /// to the client's redirect URI.
    #[tokio::test]
    async fn pages_carry_the_banner_and_the_shared_headers() {
        let csp = |r: &Response| header(r, http::header::CONTENT_SECURITY_POLICY).to_owned();
        let error = error_page(StatusCode::BAD_REQUEST, "no");
        assert!(csp(&error).contains("form-action 'none';"), "{}", csp(&error));
        let login = login_page(StatusCode::OK, "id", &request(), "", None);
        assert!(
            csp(&login).contains("form-action 'self' http://127.0.0.1:8000;"),
            "{}",
            csp(&login)
        );
        for page in [error, login] {
            assert!(csp(&page).contains("frame-ancestors 'none'"));
            assert!(csp(&page).contains("base-uri 'none'"));
            assert_eq!(header(&page, http::header::X_FRAME_OPTIONS), "DENY");
            assert_eq!(header(&page, http::header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&page, http::header::CACHE_CONTROL), "no-store");
            // `no-referrer` before: under it a browser sends `Origin: null` with the form's own
            // POST. `same-origin` sends no referrer to any other origin either (the page loads
            // nothing, and the redirect after the POST has its own `no-referrer`).
            assert_eq!(header(&page, http::header::REFERRER_POLICY), "same-origin");
            let html = text(page).await;
            assert!(html.contains("Development issuer: <strong>not Mekarge A3</strong>"));
        }
    }
}
