//! The bridge's two pages, on the shell every authorization-server page of the crate shares
//! ([`crate::oauth::html`]: escaping, CSP, no framing, no caching): the consent page that
//! `GET /authorize` shows before the user signs in at A3, and the confirmation that
//! `GET /auth/callback` shows after it on plain-http public URLs, naming the signed-in account.
//!
//! Both describe the client the same way: its name as its own claim, with every invisible or
//! reordering character removed and isolated from the text around it (`<bdi>`), and where the
//! code goes, from the verified redirect URI: a web site by its host, an application on this
//! computer by its loopback address, or an app by its URI scheme, never by what follows
//! `scheme://` in a private-use URI (`com.example.app://evil.example/cb` names no host:
//! [RFC 8252 §7.1](https://www.rfc-editor.org/rfc/rfc8252#section-7.1)).
//!
//! A client identified by its metadata document is introduced by the host that published it,
//! which the bridge verified by fetching the document there ("identity published by
//! vscode.dev"), and its name as that host claims it. When its code goes to this computer, the
//! page warns that any local program could be asking in its name ([MCP authorization
//! 2025-11-25, "Localhost Redirect URI
//! Risks"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#localhost-redirect-uri-risks)),
//! more strongly when its document names no other address: anyone can publish such a document.

use axum::response::Response;
use http::StatusCode;
use url::Url;

use super::client::Client;
use crate::fetch::is_loopback_host;
use crate::oauth::html::{csp_source, escape_html, html_response, page, visible_text};

/// Where the confirmation form posts.
pub(crate) const CONFIRM_PATH: &str = "/auth/confirm";

/// What the user is asked to let a client have.
pub(crate) struct Request<'a> {
    pub client: &'a Client,
    /// Validated against the client's registered redirect URIs.
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub resource: &'a str,
}

/// Where a redirect URI delivers the authorization code.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A web site: its host (and port, when not the scheme's default), IDNs in their ASCII form.
    Site(String),
    /// A loopback listener: an application on the user's own computer.
    ThisComputer(String),
    /// A private-use URI scheme: whichever app the system hands that scheme to.
    App(String),
}

impl Destination {
    fn of(redirect: &Url) -> Self {
        let host = redirect
            .host()
            .filter(|_| matches!(redirect.scheme(), "http" | "https"));
        match host {
            Some(h) => {
                let port = redirect.port().map(|p| format!(":{p}")).unwrap_or_default();
                let authority = format!("{h}{port}");
                if is_loopback_host(&h) {
                    Destination::ThisComputer(authority)
                } else {
                    Destination::Site(authority)
                }
            }
            None => Destination::App(format!("{}:", redirect.scheme())),
        }
    }

    /// The words for it, as HTML.
    fn html(&self) -> String {
        match self {
            Destination::Site(host) => format!("the web site <strong>{}</strong>", escape_html(host)),
            Destination::ThisComputer(address) => format!(
                "an application on this computer, at <strong>{}</strong>",
                escape_html(address)
            ),
            Destination::App(scheme) => format!(
                "the app that handles <strong>{}</strong> links on this computer (whichever app \
                 registered that scheme; it is not a web site)",
                escape_html(scheme)
            ),
        }
    }
}

/// A name someone else chose, as a page may show it: visible characters only, isolated from the
/// surrounding text's direction; `fallback` (ours) when nothing visible is left.
fn their_name(name: Option<&str>, fallback: &str) -> String {
    let name = name.map(visible_text).filter(|n| !n.is_empty());
    format!("<bdi>{}</bdi>", escape_html(name.as_deref().unwrap_or(fallback)))
}

impl Request<'_> {
    fn client_name(&self) -> String {
        their_name(
            self.client.metadata.client_name.as_deref(),
            "An unnamed application",
        )
    }

    /// The page's title: the client's name, and for a published identity its publisher.
    fn title_name(&self) -> String {
        match &self.client.publisher {
            Some(publisher) => format!("{} (published by {})", self.client_name(), escape_html(publisher)),
            None => self.client_name(),
        }
    }

    /// Who asks, for what, and where the access goes; shared by both pages.
    fn description(&self) -> String {
        let redirect = Url::parse(self.redirect_uri).ok();
        let (destination, uri) = match &redirect {
            Some(u) => (Destination::of(u).html(), u.as_str()),
            None => ("an unreadable address".to_owned(), self.redirect_uri),
        };
        let scopes: String = self
            .scope
            .split(' ')
            .map(|s| format!("<li><code>{}</code></li>", escape_html(s)))
            .collect();
        let client_id = escape_html(&self.client.metadata.client_id);
        let who = match &self.client.publisher {
            Some(publisher) => format!(
                "<p>Identity published by <strong>{publisher}</strong>: the application that \
{publisher} calls <strong>{name}</strong> (client id <code>{client_id}</code>, fetched from \
{publisher} and checked by this server) asks to use <code>{resource}</code> on your behalf.</p>",
                publisher = escape_html(publisher),
                name = self.client_name(),
                resource = escape_html(self.resource),
            ),
            None => format!(
                "<p>An application that claims to be <strong>{name}</strong> (a name it chose itself; \
client id <code>{client_id}</code>) asks to use <code>{resource}</code> on your behalf.</p>",
                name = self.client_name(),
                resource = escape_html(self.resource),
            ),
        };
        let on_this_computer = redirect
            .as_ref()
            .is_some_and(|u| matches!(Destination::of(u), Destination::ThisComputer(_)));
        let warning = match &self.client.publisher {
            Some(publisher) if on_this_computer => {
                let publisher = escape_html(publisher);
                let all = if self.client.loopback_only() {
                    format!(
                        " Every address in {publisher}'s document for this application is on this \
computer: anyone can publish such a document, so the name proves nothing about the program."
                    )
                } else {
                    String::new()
                };
                format!(
                    "<p class=\"warning\"><strong>Warning:</strong> the access goes to a program on \
this computer, and any program on it can listen there and ask in {name}'s name; {publisher} cannot \
vouch for which program this is.{all} Approve only if you just started connecting {name} \
yourself.</p>",
                    name = self.client_name(),
                )
            }
            _ => String::new(),
        };
        format!(
            "{who}{warning}<p>It will receive access at {destination}:<br><code>{uri}</code></p>\
<p>Requested scopes:</p><ul>{scopes}</ul>",
            uri = escape_html(uri),
        )
    }

    /// The `form-action` source of the redirect to the client that answers a form post.
    fn client_source(&self) -> Option<String> {
        Url::parse(self.redirect_uri).ok().map(|u| csp_source(&u))
    }
}

/// The consent page: `fields` are the form's hidden inputs (already HTML); approving goes to
/// A3 at `upstream` (an origin) and `upstream_authorize`, denying back to the client.
pub(crate) fn consent_page(
    request: &Request<'_>,
    upstream: &str,
    upstream_authorize: Option<String>,
    fields: &str,
) -> Response {
    let body = format!(
        "<h1>Authorize {name}?</h1>{description}\
<p>If you approve, you will sign in at <code>{upstream_html}</code>. Only approve applications you just started connecting yourself.</p>\
<form method=\"post\" action=\"/authorize\">{fields}\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = request.title_name(),
        description = request.description(),
        upstream_html = escape_html(upstream),
    );
    // The form's POST is answered with a redirect, and CSP form-action applies to redirects that
    // follow a form submission: Approve goes to A3's authorization endpoint, Deny back to the
    // host's redirect URI. Both must be allowed, or the browser stops on our page.
    let mut form_action = vec![upstream.to_owned()];
    form_action.extend(upstream_authorize);
    form_action.extend(request.client_source());
    form_action.dedup();
    html_response(
        StatusCode::OK,
        page("Authorize access", &body),
        &form_action.join(" "),
    )
}

/// The confirmation after the upstream sign-in: the account `account` (as A3 named it) is about
/// to be given to the client. `confirmation` is the pending grant's secret id, the form's only
/// field besides the decision.
pub(crate) fn confirmation_page(request: &Request<'_>, account: &str, confirmation: &str) -> Response {
    let body = format!(
        "<h1>Give {name} access to your account?</h1>\
<p>You are signed in as <strong>{account}</strong>.</p>{description}\
<p>Allow only if this is your account and you just started connecting this application yourself. \
If not, choose Deny: nothing is shared, and the sign-in is revoked.</p>\
<form method=\"post\" action=\"{CONFIRM_PATH}\">\
<input type=\"hidden\" name=\"confirmation\" value=\"{confirmation}\">\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = request.title_name(),
        account = their_name(Some(account), "an account without a name"),
        description = request.description(),
        confirmation = escape_html(confirmation),
    );
    // Both decisions are answered with a redirect to the client.
    html_response(
        StatusCode::OK,
        page("Confirm access", &body),
        &request.client_source().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(uri: &str) -> Destination {
        Destination::of(&Url::parse(uri).unwrap())
    }

    #[test]
    fn destinations_name_hosts_only_for_web_uris() {
        assert_eq!(
            destination("https://attacker.example/cb"),
            Destination::Site("attacker.example".into())
        );
        assert_eq!(
            destination("https://vscode.dev:444/redirect"),
            Destination::Site("vscode.dev:444".into())
        );
        // An internationalised domain is shown as the ASCII the browser will really visit.
        assert_eq!(
            destination("https://аpple.example/cb"),
            Destination::Site("xn--pple-43d.example".into())
        );
        assert_eq!(
            destination("http://127.0.0.1:33418/"),
            Destination::ThisComputer("127.0.0.1:33418".into())
        );
        assert_eq!(
            destination("http://[::1]:8/cb"),
            Destination::ThisComputer("[::1]:8".into())
        );
        // What follows `scheme://` in a private-use URI is no host: any app can claim the scheme.
        assert_eq!(
            destination("com.example.app://evil.example/cb"),
            Destination::App("com.example.app:".into())
        );
        assert_eq!(
            destination("com.example.app:/oauth"),
            Destination::App("com.example.app:".into())
        );
        assert!(
            !Destination::App("com.example.app:".into())
                .html()
                .contains("evil")
        );
    }

    #[test]
    fn names_are_visible_text_isolated_from_their_surroundings() {
        assert_eq!(
            their_name(Some("Visual\u{202e}edoC oidutS\u{200b}"), "x"),
            "<bdi>VisualedoC oidutS</bdi>"
        );
        assert_eq!(their_name(Some("\u{2066}\u{feff} "), "none"), "<bdi>none</bdi>");
        assert_eq!(their_name(None, "<none>"), "<bdi>&lt;none&gt;</bdi>");
    }
}
