//! A headless browser: a cookie jar that, like a browser's, ignores ports (so every loopback
//! listener shares it), and no redirect following; plus the consent and sign-in steps.

use http::header;

// A headless browser: cookies kept, redirects not followed.

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
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

/// The hidden fields of our consent form.
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

/// POST the consent decision; returns the response (303 to A3 on approval).
pub async fn decide(
    browser: &reqwest::Client,
    server: &str,
    fields: &[(String, String)],
    decision: &str,
) -> reqwest::Response {
    let mut form = fields.to_vec();
    form.push(("decision".into(), decision.into()));
    browser
        .post(format!("{server}/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// At A3: log in if asked (or be silently re-authorized); returns our callback URL.
pub async fn sign_in_upstream(browser: &reqwest::Client, upstream_authorize: &str, user: &str) -> String {
    let r = browser.get(upstream_authorize).send().await.unwrap();
    if r.status().is_redirection() {
        return location(&r);
    }
    let html = r.text().await.unwrap();
    let base = url::Url::parse(upstream_authorize).unwrap();
    if let Some(rest) = html.split("name=\"request\" value=\"").nth(1) {
        // The embedded development issuer's login form.
        let request = unescape(rest.split('"').next().unwrap());
        let r = browser
            .post(base.join("/login").unwrap())
            .form(&[
                ("request", request.as_str()),
                ("email", user),
                ("password", "secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "login redirects back");
        return location(&r);
    }
    let action = unescape(html.split("action=\"").nth(1).unwrap().split('"').next().unwrap());
    let r = browser
        .post(base.join(&action).unwrap())
        .form(&[("email", user), ("password", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login redirects back");
    location(&r)
}

/// The whole browser part: consent → A3 login → our callback. Returns the redirect to the host.
pub async fn authorize(browser: &reqwest::Client, server: &str, auth_url: &str, user: &str) -> String {
    let fields = open_consent(browser, auth_url).await;
    let r = decide(browser, server, &fields, "approve").await;
    assert_eq!(r.status(), 303, "approval redirects to A3");
    let callback = sign_in_upstream(browser, &location(&r), user).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "the callback redirects to the host");
    location(&r)
}
