//! [`UriTemplate`]: the resource templates a [`ContextPolicy`](super::policy::ContextPolicy)
//! names, and the exact matching that decides which template a resource URI is an instance of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A resource template as MCP servers announce them (`resources/templates/list`,
/// [MCP resources, "Resource Templates"](https://modelcontextprotocol.io/specification/2025-11-25/server/resources#resource-templates)),
/// restricted to what a policy can decide on safely: [RFC 6570](https://www.rfc-editor.org/rfc/rfc6570#section-1.2)
/// level 1, i.e. literal text and simple `{name}` expressions.
///
/// Matching is deliberately narrower than RFC 6570 expansion: a variable matches one non-empty
/// run of characters without `/`, `?` or `#` (at most one path segment), and everything is
/// compared byte for byte — no percent-decoding, no case folding, no Unicode normalisation — on
/// exactly the string rmcp hands to the handler. So `calc://tables/%61ddition`,
/// `calc://tables/addition/`, `calc://tables/addition?x=1` and `CALC://tables/addition` are not
/// instances of `calc://tables/{operation}` with `operation = addition`.
///
/// Every variable must end the template or be followed by `/`, `?` or `#`, so that a URI matches
/// in at most one way (`{a}-{b}` would let `x-y-z` split twice). Variable names are ASCII
/// letters, digits and `_`, each used once.
///
/// ```
/// use a3_mcp_auth::context::uri_template::UriTemplate;
///
/// let tables: UriTemplate = "calc://tables/{operation}".parse().unwrap();
/// assert_eq!(tables.captures("calc://tables/addition"), Some(vec![("operation", "addition")]));
/// for hostile in ["calc://tables/", "calc://tables/a/b", "calc://tables/%61ddition/", "calc://tables/x?y", "Calc://tables/x"] {
///     assert!(tables.captures(hostile).is_none_or(|c| c[0].1 != "addition"), "{hostile}");
/// }
/// assert!("calc://{a}{b}".parse::<UriTemplate>().is_err());
/// assert!("calc://{+path}".parse::<UriTemplate>().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct UriTemplate {
    source: String,
    parts: Vec<Part>,
}

// Identity is the text alone (the parts follow from it), so that a policy can look a template
// up by the string a handler announces (`Borrow<str>`).
impl PartialEq for UriTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for UriTemplate {}

impl PartialOrd for UriTemplate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UriTemplate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.source.cmp(&other.source)
    }
}

impl std::hash::Hash for UriTemplate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state)
    }
}

impl std::borrow::Borrow<str> for UriTemplate {
    fn borrow(&self) -> &str {
        &self.source
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A URI template outside what [`UriTemplate`] accepts.
///
/// ```
/// use a3_mcp_auth::context::uri_template::UriTemplate;
///
/// let err = "calc://{a}.{b}".parse::<UriTemplate>().unwrap_err();
/// assert!(err.to_string().contains("calc://{a}.{b}"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource template {template:?}: {reason}")]
pub struct InvalidUriTemplate {
    template: String,
    reason: &'static str,
}

/// Characters that end a variable's value: it never crosses a path segment, a query or a fragment.
fn ends_value(c: char) -> bool {
    matches!(c, '/' | '?' | '#')
}

impl FromStr for UriTemplate {
    type Err = InvalidUriTemplate;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        let fail = |reason| InvalidUriTemplate {
            template: source.to_owned(),
            reason,
        };
        if source.is_empty() {
            return Err(fail("it is empty"));
        }
        if source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it contains whitespace or control characters"));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            if let Some(expression) = rest.strip_prefix('{') {
                let (name, after) = expression
                    .split_once('}')
                    .ok_or_else(|| fail("a `{` is not closed"))?;
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(fail(
                        "only RFC 6570 level-1 expressions `{name}` (ASCII letters, digits, `_`) are supported",
                    ));
                }
                if parts.contains(&Part::Variable(name.to_owned())) {
                    return Err(fail("a variable appears twice"));
                }
                if !(after.is_empty() || after.starts_with(ends_value)) {
                    return Err(fail(
                        "a variable must end the template or be followed by `/`, `?` or `#`",
                    ));
                }
                parts.push(Part::Variable(name.to_owned()));
                rest = after;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if literal.contains('}') {
                    return Err(fail("a `}` is not opened"));
                }
                parts.push(Part::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        Ok(UriTemplate {
            source: source.to_owned(),
            parts,
        })
    }
}

impl UriTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The variable names, in order.
    ///
    /// ```
    /// use a3_mcp_auth::context::uri_template::UriTemplate;
    ///
    /// let t: UriTemplate = "docs://{tenant}/{doc}".parse().unwrap();
    /// assert_eq!(t.variables().collect::<Vec<_>>(), ["tenant", "doc"]);
    /// ```
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether `name` is one of the variables.
    pub fn has_variable(&self, name: &str) -> bool {
        self.variables().any(|v| v == name)
    }

    /// The value of each variable if `uri` is an instance of this template, else `None`.
    ///
    /// ```
    /// use a3_mcp_auth::context::uri_template::UriTemplate;
    ///
    /// let t: UriTemplate = "docs://{tenant}/{doc}".parse().unwrap();
    /// assert_eq!(t.captures("docs://acme/plan"), Some(vec![("tenant", "acme"), ("doc", "plan")]));
    /// assert_eq!(t.captures("docs://acme/plan/"), None);
    /// assert_eq!(t.captures("docs://acme/../plan"), None);
    /// ```
    pub fn captures<'t, 'u>(&'t self, uri: &'u str) -> Option<Vec<(&'t str, &'u str)>> {
        let mut values = Vec::new();
        let mut rest = uri;
        for part in &self.parts {
            match part {
                Part::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
                Part::Variable(name) => {
                    let end = rest.find(ends_value).unwrap_or(rest.len());
                    if end == 0 {
                        return None;
                    }
                    values.push((name.as_str(), &rest[..end]));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(values)
    }

    /// Whether `value` can stand for a variable in an instance: a non-empty run of characters
    /// without `/`, `?` or `#`.
    ///
    /// ```
    /// use a3_mcp_auth::context::uri_template::UriTemplate;
    ///
    /// assert!(UriTemplate::is_value("addition"));
    /// assert!(!UriTemplate::is_value("addition/../multiplication"));
    /// assert!(!UriTemplate::is_value(""));
    /// ```
    pub fn is_value(value: &str) -> bool {
        !value.is_empty() && !value.contains(ends_value)
    }

    /// The template with the given variables replaced (others are left as `{name}`); values
    /// are inserted as they are, so pass only values for which [`UriTemplate::is_value`] holds.
    ///
    /// ```
    /// use a3_mcp_auth::context::uri_template::UriTemplate;
    ///
    /// let t: UriTemplate = "docs://{tenant}/{doc}".parse().unwrap();
    /// assert_eq!(t.expand(&[("tenant", "acme")]), "docs://acme/{doc}");
    /// ```
    pub fn expand(&self, values: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Literal(literal) => out.push_str(literal),
                Part::Variable(name) => match values.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                },
            }
        }
        out
    }
}

impl fmt::Display for UriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for UriTemplate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for UriTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> UriTemplate {
        s.parse().unwrap()
    }

    #[test]
    fn level_one_templates_parse_and_others_do_not() {
        for ok in [
            "calc://tables/{operation}",
            "calc://constants",
            "docs://{tenant}/{doc}",
            "docs://{tenant}/x{doc}?v=1",
            "docs://{id}#top",
            "file:///{a_1}",
        ] {
            assert_eq!(t(ok).as_str(), ok);
        }
        for bad in [
            "",
            "calc://{}",
            "calc://{+path}",
            "calc://{#frag}",
            "calc://{?q}",
            "calc://{a,b}",
            "calc://{a*}",
            "calc://{a:3}",
            "calc://{a}{b}",
            "calc://{a}.{b}",
            "calc://{a}-x",
            "calc://{a}/{a}",
            "calc://{a",
            "calc://a}",
            "calc://{ a}",
            "calc://{opératión}",
            "calc:// x",
            "calc://x\n",
        ] {
            assert!(bad.parse::<UriTemplate>().is_err(), "{bad:?}");
        }
    }

    /// Each hostile URI must not be read as the `addition` instance, and none may read as any
    /// value other than the exact bytes between the literals.
    #[test]
    fn hostile_uris_are_not_instances() {
        let tables = t("calc://tables/{operation}");
        assert_eq!(
            tables.captures("calc://tables/addition"),
            Some(vec![("operation", "addition")])
        );
        let not_instances = [
            "calc://tables/",
            "calc://tables",
            "calc://tables/addition/",
            "calc://tables/addition/../multiplication",
            "calc://tables/../tables/addition",
            "calc://tables/addition?operation=multiplication",
            "calc://tables/addition#x",
            "calc://tables/multiplication/addition",
            "CALC://tables/addition",
            "calc://TABLES/addition",
            "calc://tables//addition",
            " calc://tables/addition",
            "calc://tables/addition/x",
            "calc:/tables/addition",
        ];
        for uri in not_instances {
            assert_eq!(tables.captures(uri), None, "{uri}");
        }
        // Instances, but of another value than `addition`: compared exactly, never decoded.
        let other_values = [
            ("calc://tables/%61ddition", "%61ddition"),
            (
                "calc://tables/addition%2F..%2Fmultiplication",
                "addition%2F..%2Fmultiplication",
            ),
            ("calc://tables/Addition", "Addition"),
            ("calc://tables/ADDITION", "ADDITION"),
            ("calc://tables/аddition", "аddition"), // Cyrillic а
            ("calc://tables/addition\u{200b}", "addition\u{200b}"),
            ("calc://tables/ａｄｄｉｔｉｏｎ", "ａｄｄｉｔｉｏｎ"),
            ("calc://tables/addi\u{0301}tion", "addi\u{0301}tion"),
            ("calc://tables/addition,multiplication", "addition,multiplication"),
            (
                "calc://tables/addition;operation=multiplication",
                "addition;operation=multiplication",
            ),
            ("calc://tables/addition%3Fx", "addition%3Fx"),
            ("calc://tables/..", ".."),
            ("calc://tables/addition ", "addition "),
        ];
        for (uri, value) in other_values {
            assert_eq!(tables.captures(uri), Some(vec![("operation", value)]), "{uri}");
        }
    }

    #[test]
    fn several_variables_and_query_literals() {
        let t2 = t("docs://{tenant}/x{doc}?v=1");
        assert_eq!(
            t2.captures("docs://acme/xplan?v=1"),
            Some(vec![("tenant", "acme"), ("doc", "plan")])
        );
        assert_eq!(t2.captures("docs://acme/xplan?v=2"), None);
        assert_eq!(t2.captures("docs://acme/x?v=1"), None);
        assert_eq!(t2.captures("docs://acme/yplan?v=1"), None);
        assert_eq!(t2.expand(&[("doc", "plan")]), "docs://{tenant}/xplan?v=1");
    }

    #[test]
    fn serde_round_trip_validates() {
        let json = serde_json::to_string(&t("calc://tables/{operation}")).unwrap();
        assert_eq!(json, r#""calc://tables/{operation}""#);
        assert_eq!(
            serde_json::from_str::<UriTemplate>(&json).unwrap(),
            t("calc://tables/{operation}")
        );
        assert!(serde_json::from_str::<UriTemplate>(r#""calc://{a}{b}""#).is_err());
    }
}
