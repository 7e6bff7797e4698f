//! The development issuer's HTML pages: the sign-in form and the error page.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::helpers::{escape_html, no_store};
use super::state::AuthRequest;

pub(super) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}\
    .dev{background:#fde68a;border:1px solid #b45309;padding:.5rem;border-radius:.25rem}\
    .error{color:#b91c1c}label{display:block;margin:.75rem 0}input{display:block;width:100%;padding:.4rem}\
    button{margin-top:1rem;padding:.5rem 1.5rem}";

pub(super) fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <p class=\"dev\">Development issuer: <strong>not Mekarge A3</strong>. For local development only.</p>\
         {body}</main></body></html>\n",
        title = escape_html(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    no_store(response)
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    html_page(
        status,
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p class=\"error\">{}</p>",
            escape_html(message)
        ),
    )
}

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
        "<h1>Sign in</h1><p><strong>{client}</strong> asks for <strong>{scope}</strong> on \
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
    html_page(status, "Sign in", &body)
}
