//! A headless browser: a cookie jar that, like a browser's, ignores ports (so every loopback
//! listener shares it), no redirect following, and form posts with the `Origin` and
//! `Sec-Fetch-Site` a browser sends; plus the consent, sign-in and confirmation steps.

use std::sync::Arc;

use http::header;
use reqwest::cookie::{CookieStore, Jar};

// A headless browser: cookies kept, redirects not followed.

pub fn browser() -> reqwest::Client {
    browser_with_jar().0
}

/// A browser and its cookie jar, to read what a site set (an attacker copying his own cookies).
pub fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// The cookies `jar` would send to `url`, as `name=value` pairs.
pub fn cookies_for(jar: &Jar, url: &str) -> Vec<String> {
    jar.cookies(&url::Url::parse(url).unwrap())
        .map(|v| v.to_str().unwrap().split("; ").map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `Sec-Fetch-Site` of a request from a page at `from` to `to`, as browsers compute it: the same
/// origin, else the same site (scheme and host: ports do not count, so every loopback port is
/// one site), else cross-site.
pub fn sec_fetch_site(from: &str, to: &str) -> &'static str {
    let (from, to) = (url::Url::parse(from).unwrap(), url::Url::parse(to).unwrap());
    if from.origin() == to.origin() {
        "same-origin"
    } else if from.scheme() == to.scheme() && from.host() == to.host() {
        "same-site"
    } else {
        "cross-site"
    }
}

/// The form post a browser makes when a page at `page` submits `fields` to `action`: with the
/// page's `Origin` and the `Sec-Fetch-Site` that follows from it.
pub async fn submit_form(
    browser: &reqwest::Client,
    page: &str,
    action: &str,
    fields: &[(String, String)],
) -> reqwest::Response {
    let origin = url::Url::parse(page).unwrap().origin().ascii_serialization();
    browser
        .post(action)
        .header(header::ORIGIN, origin)
        .header("sec-fetch-site", sec_fetch_site(page, action))
        .form(fields)
        .send()
        .await
        .unwrap()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The cookie of `response`'s `Set-Cookie` headers whose name starts with `prefix`, as the
/// `name=value` a browser sends back (or a page plants).
pub fn set_cookie(response: &reqwest::Response, prefix: &str) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} cookie"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// What a browser does with a page whose script submits its form at once: posts the form's
/// hidden fields to its `action`, from the page's origin.
pub async fn submit_page_form(browser: &reqwest::Client, page: &str, html: &str) -> reqwest::Response {
    let action = unescape(html.split("action=\"").nth(1).unwrap().split('"').next().unwrap());
    let action = url::Url::parse(page).unwrap().join(&action).unwrap();
    submit_form(browser, page, action.as_str(), &consent_fields(html)).await
}

/// The hidden fields of a form (our consent form, or any page's).
pub fn consent_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('"').unwrap();
            let value = rest.split_once("value=\"").unwrap().1.split_once('"').unwrap().0;
            (name.to_owned(), unescape(value))
        })
        .collect()
}

/// GET our /authorize, check the consent page, return its form fields.
pub async fn open_consent(browser: &reqwest::Client, auth_url: &str) -> Vec<(String, String)> {
    let r = browser.get(auth_url).send().await.unwrap();
    assert_eq!(r.status(), 200, "consent page expected");
    let html = r.text().await.unwrap();
    consent_fields(&html)
}

/// POST the consent decision from our consent page; returns the response (303 to A3 on
/// approval).
pub async fn decide(
    browser: &reqwest::Client,
    server: &str,
    fields: &[(String, String)],
    decision: &str,
) -> reqwest::Response {
    let mut form = fields.to_vec();
    form.push(("decision".into(), decision.into()));
    let action = format!("{server}/authorize");
    submit_form(browser, &action, &action, &form).await
}

/// The secret id in our confirmation page (the one shown after the upstream sign-in).
pub fn confirmation_id(html: &str) -> String {
    html.split("name=\"confirmation\" value=\"")
        .nth(1)
        .expect("a confirmation page")
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// POST the confirmation `decision` (`allow` or `deny`) from our confirmation page `html`,
/// which the browser got at `page`.
pub async fn confirm(browser: &reqwest::Client, page: &str, html: &str, decision: &str) -> reqwest::Response {
    let base = url::Url::parse(page).unwrap();
    let action = base.join("/auth/confirm").unwrap().to_string();
    let form = [
        ("confirmation".to_owned(), confirmation_id(html)),
        ("decision".to_owned(), decision.to_owned()),
    ];
    submit_form(browser, page, &action, &form).await
}

/// Back at our callback from A3: the confirmation page (which must name `user`), Allow; returns
/// the redirect to the host.
pub async fn allow_at_callback(browser: &reqwest::Client, callback: &str, user: &str) -> String {
    let r = browser.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 200, "the callback asks to confirm the account");
    let html = r.text().await.unwrap();
    assert!(html.contains(user), "the confirmation names the account {user}");
    let r = confirm(browser, callback, &html, "allow").await;
    assert_eq!(r.status(), 303, "Allow redirects to the host");
    location(&r)
}

/// At A3: log in if asked (or be silently re-authorized); returns our callback URL.
pub async fn sign_in_upstream(browser: &reqwest::Client, upstream_authorize: &str, user: &str) -> String {
    sign_in_upstream_as(browser, upstream_authorize, user, "secret").await
}

/// [`sign_in_upstream`] with `password`.
pub async fn sign_in_upstream_as(
    browser: &reqwest::Client,
    upstream_authorize: &str,
    user: &str,
    password: &str,
) -> String {
    let r = browser.get(upstream_authorize).send().await.unwrap();
    if r.status().is_redirection() {
        return location(&r);
    }
    let html = r.text().await.unwrap();
    let base = url::Url::parse(upstream_authorize).unwrap();
    let mut form = vec![
        ("email".to_owned(), user.to_owned()),
        ("password".to_owned(), password.to_owned()),
    ];
    let action = match html.split("name=\"request\" value=\"").nth(1) {
        // The embedded development issuer's login form.
        Some(rest) => {
            form.push(("request".into(), unescape(rest.split('"').next().unwrap())));
            base.join("/login").unwrap()
        }
        None => base
            .join(&unescape(
                html.split("action=\"").nth(1).unwrap().split('"').next().unwrap(),
            ))
            .unwrap(),
    };
    let r = submit_form(browser, upstream_authorize, action.as_str(), &form).await;
    assert_eq!(r.status(), 303, "login redirects back");
    location(&r)
}

/// The whole browser part: consent → A3 login → our callback → confirmation. Returns the
/// redirect to the host.
pub async fn authorize(browser: &reqwest::Client, server: &str, auth_url: &str, user: &str) -> String {
    let fields = open_consent(browser, auth_url).await;
    let r = decide(browser, server, &fields, "approve").await;
    assert_eq!(r.status(), 303, "approval redirects to A3");
    let callback = sign_in_upstream(browser, &location(&r), user).await;
    allow_at_callback(browser, &callback, user).await
}
