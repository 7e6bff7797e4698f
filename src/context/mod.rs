//! A3 Contexts: [`Context`], the [`ContextSet`] a token carries and its claim-shape parser; the
//! [`policy`] that maps contexts to tools, prompts and resources; the [`uri_template`]s that
//! policy names resource templates by; the [`visibility`] a policy gives one caller.
//!
//! A3 Contexts are `key=value` pairs an administrator makes visible to a client for users in a
//! role: in A3's words, "a specific subset of MCP functionality or data". They narrow what the
//! MCP server exposes beyond the `mcp:call` scope: a user holding `operation=addition` sees the
//! tool `add` and may read `calc://tables/addition`. How A3 puts them in the access token is not
//! documented, so the claim name is configuration ([`A3Config::context_claim`](crate::A3Config::context_claim))
//! and [`ContextSet::from_claims`] accepts every plausible shape.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claims::Claims;

pub mod policy;
pub mod uri_template;
pub mod visibility;

/// Longest context key or value accepted from a token, in bytes.
///
/// ```
/// use a3_mcp_auth::context::{Context, MAX_CONTEXT_LEN};
///
/// assert!(Context::new("k", "v".repeat(MAX_CONTEXT_LEN)).is_ok());
/// assert!(Context::new("k", "v".repeat(MAX_CONTEXT_LEN + 1)).is_err());
/// ```
pub const MAX_CONTEXT_LEN: usize = 256;

/// Most contexts read from one token; the rest are ignored (and logged at debug level).
///
/// ```
/// use a3_mcp_auth::context::{ContextSet, MAX_CONTEXTS};
/// use serde_json::json;
///
/// let many: Vec<_> = (0..MAX_CONTEXTS + 10).map(|i| json!(format!("k={i}"))).collect();
/// assert_eq!(ContextSet::from_value(&json!(many)).len(), MAX_CONTEXTS);
/// ```
pub const MAX_CONTEXTS: usize = 256;

/// One A3 Context: a `key=value` pair, compared exactly (no case folding, no normalisation).
///
/// It is written `key=value`: the key is everything before the first `=`, the value everything
/// after it. Both must be non-empty, at most [`MAX_CONTEXT_LEN`] bytes, and free of whitespace
/// and control characters.
///
/// ```
/// use a3_mcp_auth::context::Context;
///
/// let c: Context = "operation=addition".parse().unwrap();
/// assert_eq!((c.key(), c.value()), ("operation", "addition"));
/// assert_eq!(c.to_string(), "operation=addition");
/// assert_eq!(c, Context::new("operation", "addition").unwrap());
/// assert!("operation=".parse::<Context>().is_err());
/// assert!("=addition".parse::<Context>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Context {
    key: String,
    value: String,
}

/// A context string or pair was not a valid `key=value` context.
///
/// ```
/// use a3_mcp_auth::context::Context;
///
/// let err = "no equals sign".parse::<Context>().unwrap_err();
/// assert!(err.to_string().contains("key=value"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a context (expected key=value, each part 1-{MAX_CONTEXT_LEN} bytes without whitespace)")]
pub struct InvalidContext;

fn valid_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_CONTEXT_LEN && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Context {
    /// A context from its key and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Result<Self, InvalidContext> {
        let (key, value) = (key.into(), value.into());
        if valid_part(&key) && !key.contains('=') && valid_part(&value) {
            Ok(Context { key, value })
        } else {
            Err(InvalidContext)
        }
    }

    /// The key, e.g. `operation`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, e.g. `addition`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl FromStr for Context {
    type Err = InvalidContext;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s.split_once('=').ok_or(InvalidContext)?;
        Context::new(key, value)
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The contexts a token carries.
///
/// ```
/// use a3_mcp_auth::Claims;
/// use a3_mcp_auth::context::ContextSet;
/// use serde_json::json;
///
/// let claims = Claims::from_value(json!({
///     "sub": "johndoe",
///     "contexts": {"operation": ["addition", "multiplication"]},
/// }))
/// .unwrap();
/// let contexts = ContextSet::from_claims(&claims, "contexts");
/// assert!(contexts.contains("operation", "addition"));
/// assert!(contexts.contains("operation", "multiplication"));
/// assert!(!contexts.contains("operation", "Addition"));
/// assert_eq!(contexts.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextSet {
    contexts: BTreeSet<Context>,
}

impl ContextSet {
    /// No contexts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The contexts in the claim `claim` of `claims` (none if the claim is absent).
    pub fn from_claims(claims: &Claims, claim: &str) -> Self {
        claims.get(claim).map(Self::from_value).unwrap_or_default()
    }

    /// Parses a context claim value. Accepted shapes (anything else is ignored with a debug log):
    ///
    /// - an object of key → string, or key → list of strings:
    ///   `{"operation": "addition"}`, `{"operation": ["addition", "multiplication"]}`;
    /// - a list of `"key=value"` strings: `["operation=addition"]`;
    /// - a list of `{"key": …, "value": …}` objects (the value a string or a list of strings);
    /// - one space-delimited string of `key=value`: `"operation=addition region=eu"`.
    ///
    /// Lists may mix the two item shapes. Keys and values are kept exactly as written; invalid
    /// entries (see [`Context`]) are skipped, never repaired. At most [`MAX_CONTEXTS`] are read.
    ///
    /// ```
    /// use a3_mcp_auth::context::ContextSet;
    /// use serde_json::json;
    ///
    /// let shapes = [
    ///     json!({"operation": "addition"}),
    ///     json!({"operation": ["addition"]}),
    ///     json!(["operation=addition"]),
    ///     json!([{"key": "operation", "value": "addition"}]),
    ///     json!("operation=addition"),
    /// ];
    /// for shape in shapes {
    ///     assert!(ContextSet::from_value(&shape).contains("operation", "addition"), "{shape}");
    /// }
    /// assert!(ContextSet::from_value(&json!(42)).is_empty());
    /// ```
    pub fn from_value(value: &Value) -> Self {
        let mut parser = Parser::default();
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    parser.key_values(key, v);
                }
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => parser.pair_str(s),
                        Value::Object(obj) => match (obj.get("key"), obj.get("value")) {
                            (Some(Value::String(key)), Some(v)) if obj.len() == 2 => {
                                parser.key_values(key, v)
                            }
                            _ => parser.ignore("a list item object is not {\"key\", \"value\"}"),
                        },
                        _ => parser.ignore("a list item is neither a string nor an object"),
                    }
                }
            }
            Value::String(s) => {
                for pair in s.split(' ').filter(|p| !p.is_empty()) {
                    parser.pair_str(pair);
                }
            }
            _ => parser.ignore("the claim is not an object, a list or a string"),
        }
        if parser.ignored > 0 {
            tracing::debug!(
                ignored = parser.ignored,
                kept = parser.set.len(),
                first_reason = parser.first_reason,
                "ignored context claim entries"
            );
        }
        ContextSet { contexts: parser.set }
    }

    /// Whether the context `key=value` is present (exact comparison).
    pub fn contains(&self, key: &str, value: &str) -> bool {
        self.contexts.iter().any(|c| c.key == key && c.value == value)
    }

    /// Whether `context` is present.
    pub fn has(&self, context: &Context) -> bool {
        self.contexts.contains(context)
    }

    /// Adds a context.
    pub fn insert(&mut self, context: Context) {
        self.contexts.insert(context);
    }

    /// The contexts, ordered by key then value.
    pub fn iter(&self) -> impl Iterator<Item = &Context> {
        self.contexts.iter()
    }

    /// How many contexts there are.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }
}

impl FromIterator<Context> for ContextSet {
    fn from_iter<I: IntoIterator<Item = Context>>(iter: I) -> Self {
        ContextSet {
            contexts: iter.into_iter().collect(),
        }
    }
}

/// Collects valid contexts; counts what it skips and logs it once (a hostile token could hold
/// thousands of bad entries, which must not become thousands of log lines).
#[derive(Default)]
struct Parser {
    set: BTreeSet<Context>,
    ignored: usize,
    first_reason: Option<&'static str>,
}

impl Parser {
    fn ignore(&mut self, why: &'static str) {
        self.ignored += 1;
        self.first_reason.get_or_insert(why);
    }

    fn push(&mut self, result: Result<Context, InvalidContext>) {
        match result {
            Ok(_) if self.set.len() >= MAX_CONTEXTS => self.ignore("more contexts than MAX_CONTEXTS"),
            Ok(c) => {
                self.set.insert(c);
            }
            Err(_) => self.ignore("not a valid key=value context"),
        }
    }

    fn pair_str(&mut self, s: &str) {
        self.push(s.parse());
    }

    fn key_values(&mut self, key: &str, value: &Value) {
        match value {
            Value::String(v) => self.push(Context::new(key, v.as_str())),
            Value::Array(values) => {
                for v in values {
                    match v {
                        Value::String(v) => self.push(Context::new(key, v.as_str())),
                        _ => self.ignore("a context value in a list is not a string"),
                    }
                }
            }
            _ => self.ignore("a context value is neither a string nor a list of strings"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Vec<String> {
        ContextSet::from_value(&v)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_documented_shape_parses() {
        let want = ["operation=addition", "operation=multiplication"];
        assert_eq!(parse(json!({"operation": ["addition", "multiplication"]})), want);
        assert_eq!(
            parse(json!({"operation": "addition", "region": "eu"})),
            ["operation=addition", "region=eu"]
        );
        assert_eq!(
            parse(json!(["operation=addition", "operation=multiplication"])),
            want
        );
        assert_eq!(
            parse(
                json!([{"key": "operation", "value": "addition"}, {"key": "operation", "value": "multiplication"}])
            ),
            want
        );
        assert_eq!(
            parse(json!([{"key": "operation", "value": ["addition", "multiplication"]}])),
            want
        );
        assert_eq!(parse(json!("operation=addition  operation=multiplication")), want);
        assert_eq!(
            parse(json!(["operation=addition", {"key": "operation", "value": "multiplication"}])),
            want
        );
        assert_eq!(parse(json!("operation=a=b")), ["operation=a=b"]);
    }

    /// Hostile values: each must yield no `operation=addition` (and must not panic).
    #[test]
    fn hostile_values_grant_nothing() {
        let huge: Vec<Value> = (0..100_000).map(|i| json!(format!("k{i}=v"))).collect();
        let deep = (0..200).fold(json!("operation=addition"), |acc, _| json!([acc]));
        let hostile = vec![
            json!(null),
            json!(true),
            json!(1),
            json!(1.5),
            json!({}),
            json!([]),
            json!(""),
            json!(" "),
            json!({"operation": 1}),
            json!({"operation": null}),
            json!({"operation": {"addition": true}}),
            json!({"operation": [["addition"]]}),
            json!({"operation": [{"value": "addition"}]}),
            json!([["operation=addition"]]),
            json!([{"key": "operation"}]),
            json!([{"value": "addition"}]),
            json!([{"key": "operation", "value": "addition", "extra": 1}]),
            json!([{"key": ["operation"], "value": "addition"}]),
            json!([{"key": "operation", "value": {"x": "addition"}}]),
            json!(["operation"]),
            json!(["=operation=addition"]),
            json!(["operation==addition"]),
            json!(["operation= addition"]),
            json!(["operation =addition"]),
            json!({"operation=": "addition"}),
            json!({"operation": "=addition"}),
            json!({"operation": "addition "}),
            json!({"operation": "addition\n"}),
            json!({"operation": "addition\u{0}"}),
            json!({"operation": "Addition"}),
            json!({"Operation": "addition"}),
            json!({"operation": "аddition"}),         // Cyrillic а
            json!({"operation": "addıtion"}),         // dotless ı
            json!({"operation": "addition\u{200b}"}), // zero-width space
            json!({"operation": "ａｄｄｉｔｉｏｎ"}), // full-width
            json!({"operation": "addi\u{0301}tion"}),
            json!("operation=addition\u{00a0}x"),
            json!({"operation": "a".repeat(10_000)}),
            json!({"operation": format!("addition{}", "x".repeat(300))}),
            Value::Array(huge),
            deep,
        ];
        assert!(hostile.len() >= 20);
        for v in &hostile {
            let set = ContextSet::from_value(v);
            assert!(!set.contains("operation", "addition"), "{v}");
            assert!(set.len() <= MAX_CONTEXTS);
        }
    }

    #[test]
    fn huge_list_is_capped() {
        let huge: Vec<Value> = (0..10_000).map(|i| json!(format!("k{i}=v"))).collect();
        assert_eq!(ContextSet::from_value(&Value::Array(huge)).len(), MAX_CONTEXTS);
    }
}
