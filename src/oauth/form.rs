//! The body of a token or revocation request: `application/x-www-form-urlencoded`
//! (RFC 6749 §4.1.3, RFC 7009 §2.1).

use std::collections::HashMap;

use http::HeaderMap;

/// Request parameters. A parameter sent twice makes the request invalid, even if one of the
/// values is empty (RFC 6749 §3.2: "Request and response parameters MUST NOT be included more
/// than once"); an empty value reads as absent (RFC 6749 §3.1: "Parameters sent without a value
/// MUST be treated as if they were omitted").
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

/// Why a body is not a usable parameter set; the message names no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormError {
    /// The body has another media type.
    #[error("the body must be application/x-www-form-urlencoded")]
    NotAForm,
    /// A parameter appears more than once.
    #[error("the parameter {0} is sent more than once")]
    Repeated(String),
}

impl Params {
    /// Parses a request body whose `Content-Type` is the form type. An empty body without a
    /// content type is an empty form.
    pub(crate) fn from_request(headers: &HeaderMap, body: &[u8]) -> Result<Params, FormError> {
        if !super::content_type_is(headers, "application/x-www-form-urlencoded") && !body.is_empty() {
            return Err(FormError::NotAForm);
        }
        Self::parse(body)
    }

    /// Parses a form-encoded body.
    pub(crate) fn parse(body: &[u8]) -> Result<Params, FormError> {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if map
                .insert(name.clone().into_owned(), value.into_owned())
                .is_some()
            {
                // Names are the server's own vocabulary; cap what is echoed anyway.
                let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(FormError::Repeated(name));
            }
        }
        Ok(Params(map))
    }

    /// The value of `name`; `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header};

    fn form() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        h
    }

    #[test]
    fn empty_values_read_as_absent() {
        let p = Params::from_request(&form(), b"grant_type=authorization_code&scope=&code=abc").unwrap();
        assert_eq!(p.get("grant_type"), Some("authorization_code"));
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("missing"), None);
    }

    /// The two copies disagreed: the bridge refused `a=&a=x`, the development issuer dropped
    /// the empty value first and accepted it. Both now refuse: a parameter sent twice is
    /// ambiguous whatever its values (RFC 6749 §3.2).
    #[test]
    fn a_repeated_parameter_is_refused_even_when_one_value_is_empty() {
        assert_eq!(
            Params::from_request(&form(), b"code=&code=abc").unwrap_err(),
            FormError::Repeated("code".into())
        );
        assert!(Params::from_request(&form(), b"code=a&code=a").is_err());
    }

    /// The bridge read any body as a form; the development issuer required the form type. Both
    /// now require it (RFC 6749 §4.1.3), so a JSON or `text/plain` body is refused rather than
    /// parsed by accident.
    #[test]
    fn other_media_types_are_refused() {
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(
            Params::from_request(&json, b"grant_type=x").unwrap_err(),
            FormError::NotAForm
        );
        assert_eq!(
            Params::from_request(&HeaderMap::new(), b"grant_type=x").unwrap_err(),
            FormError::NotAForm
        );
        assert!(Params::from_request(&HeaderMap::new(), b"").is_ok());
    }
}
