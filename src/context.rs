//! A3 Contexts and per-tool visibility: [`ContextSet`], [`ToolPolicy`], [`ToolContextLayer`],
//! [`ToolContext`] and [`VisibleTools`].
//!
//! A3 Contexts are `key=value` pairs an administrator makes visible to a client for users in a
//! role. They narrow what the MCP server exposes beyond the `mcp:call` scope: a user holding
//! `operation=addition` sees the tool `add`. How A3 puts them in the access token is not
//! documented, so the claim name is configuration ([`A3Config::context_claim`](crate::A3Config::context_claim))
//! and [`ContextSet::from_claims`] accepts every plausible shape.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{HeaderMap, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::{Layer, Service};

use crate::bearer::{AuthBody, error_response};
use crate::transport::ResponseFuture;
use crate::{AuthError, Challenge, Claims, DEFAULT_CONTEXT_CLAIM};

/// Longest context key or value accepted from a token, in bytes.
///
/// ```
/// use a3_mcp_auth::{Context, MAX_CONTEXT_LEN};
///
/// assert!(Context::new("k", "v".repeat(MAX_CONTEXT_LEN)).is_ok());
/// assert!(Context::new("k", "v".repeat(MAX_CONTEXT_LEN + 1)).is_err());
/// ```
pub const MAX_CONTEXT_LEN: usize = 256;

/// Most contexts read from one token; the rest are ignored (and logged at debug level).
///
/// ```
/// use a3_mcp_auth::{ContextSet, MAX_CONTEXTS};
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
/// use a3_mcp_auth::Context;
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
/// use a3_mcp_auth::Context;
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
/// use a3_mcp_auth::{Claims, ContextSet};
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
    /// use a3_mcp_auth::ContextSet;
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

/// Who may see one tool: contexts (any-of and/or all-of), or everybody; and which extra scopes
/// a call needs. Part of a [`ToolPolicy`].
///
/// A rule is satisfied when the tool is `public`, or when at least one context was listed and
/// the caller holds at least one of `any_of` (if not empty) and every one of `all_of`.
/// A rule that lists no context and is not public shows the tool to nobody.
///
/// ```
/// use a3_mcp_auth::{ContextSet, ToolRule};
///
/// let rule = ToolRule::any_of([("operation", "addition")]).with_scopes(["calc:write"]);
/// let mut held = ContextSet::new();
/// assert!(!rule.is_visible(&held));
/// held.insert("operation=addition".parse().unwrap());
/// assert!(rule.is_visible(&held));
/// assert_eq!(rule.scopes(), ["calc:write"]);
/// assert!(ToolRule::public().is_visible(&ContextSet::new()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// Visible to every caller that passed the other layers, whatever their contexts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Visible to callers holding at least one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<Context>,
    /// Visible only to callers holding all of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_of: Vec<Context>,
    /// Scopes a call needs beyond those the scope layer already requires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl ToolRule {
    /// Visible to everybody.
    pub fn public() -> Self {
        ToolRule {
            public: true,
            ..Self::default()
        }
    }

    /// Visible to holders of any of `contexts`.
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`]: policies are written by the developer, and a typo
    /// should stop the server at start-up rather than silently hide a tool.
    pub fn any_of<I, K, V>(contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        ToolRule {
            any_of: pairs(contexts),
            ..Self::default()
        }
    }

    /// Visible to holders of all of `contexts`.
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`] (see [`ToolRule::any_of`]).
    pub fn all_of<I, K, V>(contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        ToolRule {
            all_of: pairs(contexts),
            ..Self::default()
        }
    }

    /// Also requires all of `contexts` (combine with [`ToolRule::any_of`]).
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`] (see [`ToolRule::any_of`]).
    pub fn and_all_of<I, K, V>(mut self, contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.all_of.extend(pairs(contexts));
        self
    }

    /// Calls need these scopes too; a token without them gets `insufficient_scope`.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The extra scopes a call needs.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether a caller holding `held` may see the tool.
    pub fn is_visible(&self, held: &ContextSet) -> bool {
        if self.public {
            return true;
        }
        if self.any_of.is_empty() && self.all_of.is_empty() {
            return false;
        }
        (self.any_of.is_empty() || self.any_of.iter().any(|c| held.has(c)))
            && self.all_of.iter().all(|c| held.has(c))
    }
}

fn pairs<I, K, V>(contexts: I) -> Vec<Context>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    contexts
        .into_iter()
        .map(|(k, v)| {
            let (k, v) = (k.into(), v.into());
            Context::new(k.clone(), v.clone()).unwrap_or_else(|_| panic!("invalid context {k:?}={v:?}"))
        })
        .collect()
}

/// Which contexts make each tool visible, and which extra scopes each tool's calls need.
///
/// Tools the policy does not mention are hidden (fail closed). A policy is plain data: build it
/// in code, or load it from JSON ([`ToolPolicy::from_json_str`], [`ToolPolicy::from_json_file`]).
/// Unknown fields are errors, so a misspelt rule fails loudly instead of hiding a tool.
///
/// ```
/// use a3_mcp_auth::{ContextSet, ToolPolicy, ToolRule};
///
/// let policy = ToolPolicy::new()
///     .tool("add", ToolRule::any_of([("operation", "addition")]))
///     .tool("multiply", ToolRule::any_of([("operation", "multiplication")]))
///     .public_tool("whoami");
///
/// let same = ToolPolicy::from_json_str(r#"{"tools": {
///     "add":      {"any_of": ["operation=addition"]},
///     "multiply": {"any_of": ["operation=multiplication"]},
///     "whoami":   {"public": true}
/// }}"#).unwrap();
/// assert_eq!(policy, same);
///
/// let held: ContextSet = ["operation=addition".parse().unwrap()].into_iter().collect();
/// let visible = policy.visible_tools(&held, &Default::default());
/// assert!(visible.is_visible("add") && visible.is_visible("whoami"));
/// assert!(!visible.is_visible("multiply") && !visible.is_visible("unlisted"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicy {
    /// The rule of each tool, by tool name (exact).
    pub tools: BTreeMap<String, ToolRule>,
}

/// A policy file could not be read or parsed.
///
/// ```
/// use a3_mcp_auth::ToolPolicy;
///
/// let err = ToolPolicy::from_json_str(r#"{"tools": {"add": {"anyOf": ["operation=addition"]}}}"#)
///     .unwrap_err();
/// assert!(err.to_string().contains("anyOf"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the tool policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is not a valid policy.
    #[error("invalid tool policy: {0}")]
    Json(#[from] serde_json::Error),
}

impl ToolPolicy {
    /// An empty policy: every tool hidden.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rule of `name`.
    pub fn tool(mut self, name: impl Into<String>, rule: ToolRule) -> Self {
        self.tools.insert(name.into(), rule);
        self
    }

    /// Makes `name` visible to everybody.
    pub fn public_tool(self, name: impl Into<String>) -> Self {
        self.tool(name, ToolRule::public())
    }

    /// Parses a JSON policy: `{"tools": {"<name>": {"public"?, "any_of"?, "all_of"?, "scopes"?}}}`.
    pub fn from_json_str(json: &str) -> Result<Self, PolicyError> {
        Ok(serde_json::from_str(json)?)
    }

    /// Reads a JSON policy file (see [`ToolPolicy::from_json_str`]).
    ///
    /// ```
    /// use a3_mcp_auth::ToolPolicy;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("tools.json");
    /// std::fs::write(&path, r#"{"tools": {"whoami": {"public": true}}}"#).unwrap();
    /// let policy = ToolPolicy::from_json_file(&path).unwrap();
    /// assert!(policy.rule("whoami").unwrap().public);
    /// assert!(ToolPolicy::from_json_file(dir.path().join("missing.json")).is_err());
    /// ```
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// The rule of `name`, if the policy mentions it.
    pub fn rule(&self, name: &str) -> Option<&ToolRule> {
        self.tools.get(name)
    }

    /// The tools a caller holding `held`, with the granted `scopes`, may see; see [`VisibleTools`].
    pub fn visible_tools(&self, held: &ContextSet, scopes: &BTreeSet<String>) -> VisibleTools {
        let tools = self
            .tools
            .iter()
            .filter(|(_, rule)| rule.is_visible(held))
            .map(|(name, rule)| {
                let missing: Vec<String> = rule
                    .scopes
                    .iter()
                    .filter(|s| !scopes.contains(*s))
                    .cloned()
                    .collect();
                let access = if missing.is_empty() {
                    ToolAccess::Callable
                } else {
                    ToolAccess::NeedsScopes(rule.scopes.join(" "))
                };
                (name.clone(), access)
            })
            .collect();
        VisibleTools {
            tools: Arc::new(tools),
        }
    }

    /// Every extra scope some tool's calls need, each once, in tool-name order: what an
    /// authorization server in front of these tools must offer besides the base scope, or the
    /// `insufficient_scope` challenge names a scope nobody can obtain.
    ///
    /// ```
    /// use a3_mcp_auth::{ToolPolicy, ToolRule};
    ///
    /// let policy = ToolPolicy::new()
    ///     .tool("reset", ToolRule::any_of([("role", "admin")]).with_scopes(["calc:admin"]))
    ///     .tool("wipe", ToolRule::any_of([("role", "admin")]).with_scopes(["calc:admin", "calc:wipe"]))
    ///     .public_tool("whoami");
    /// assert_eq!(policy.scopes(), ["calc:admin", "calc:wipe"]);
    /// ```
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.tools.values() {
            for scope in &rule.scopes {
                if !out.contains(scope) {
                    out.push(scope.clone());
                }
            }
        }
        out
    }

    /// For start-up summaries: each context the policy mentions, with the tools it unlocks
    /// (`all_of` contexts are listed too, marked by the rule), plus the public tools under `None`.
    ///
    /// ```
    /// use a3_mcp_auth::{ToolPolicy, ToolRule};
    ///
    /// let policy = ToolPolicy::new()
    ///     .tool("add", ToolRule::any_of([("operation", "addition")]))
    ///     .public_tool("whoami");
    /// let unlocks = policy.unlocks();
    /// assert_eq!(unlocks[&Some("operation=addition".parse().unwrap())], ["add"]);
    /// assert_eq!(unlocks[&None], ["whoami"]);
    /// ```
    pub fn unlocks(&self) -> BTreeMap<Option<Context>, Vec<String>> {
        let mut out: BTreeMap<Option<Context>, Vec<String>> = BTreeMap::new();
        for (name, rule) in &self.tools {
            if rule.public {
                out.entry(None).or_default().push(name.clone());
                continue;
            }
            for c in rule.any_of.iter().chain(&rule.all_of) {
                let tools = out.entry(Some(c.clone())).or_default();
                if !tools.contains(name) {
                    tools.push(name.clone());
                }
            }
        }
        out
    }
}

/// Whether a visible tool can be called with the token's scopes.
///
/// ```
/// use a3_mcp_auth::{ContextSet, ToolAccess, ToolPolicy, ToolRule};
///
/// let policy = ToolPolicy::new().tool("reset", ToolRule::public().with_scopes(["admin"]));
/// let granted = ["admin".to_owned()].into();
/// let visible = policy.visible_tools(&ContextSet::new(), &granted);
/// assert_eq!(visible.access("reset"), Some(&ToolAccess::Callable));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolAccess {
    /// The token has every scope the tool needs.
    Callable,
    /// The token lacks some; the string lists every scope the tool needs (space-separated).
    NeedsScopes(String),
}

/// The tools one request may see and call: computed by [`ToolContextLayer`] from the verified
/// claims and the [`ToolPolicy`], stored in the request extensions, and enforced by
/// [`ContextFiltered`](crate::ContextFiltered) where rmcp dispatches.
///
/// A request without this extension sees no tool at all.
///
/// ```
/// use a3_mcp_auth::{ContextSet, ToolAccess, ToolPolicy, ToolRule};
///
/// let policy = ToolPolicy::new().tool("reset", ToolRule::public().with_scopes(["admin"]));
/// let visible = policy.visible_tools(&ContextSet::new(), &Default::default());
/// assert_eq!(visible.access("reset"), Some(&ToolAccess::NeedsScopes("admin".into())));
/// assert_eq!(visible.access("other"), None);
/// assert_eq!(visible.names().collect::<Vec<_>>(), ["reset"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VisibleTools {
    tools: Arc<BTreeMap<String, ToolAccess>>,
}

impl VisibleTools {
    /// No tool visible.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `name` is visible (exact comparison).
    pub fn is_visible(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// How `name` may be used; `None` if it is hidden.
    pub fn access(&self, name: &str) -> Option<&ToolAccess> {
        self.tools.get(name)
    }

    /// The visible tool names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// How many tools are visible.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is visible.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// Layer that computes each request's [`VisibleTools`] (and the caller's [`ContextSet`]) from the
/// verified [`Claims`] and a [`ToolPolicy`], and puts both in the request extensions.
///
/// It goes inside [`BearerAuthLayer`](crate::BearerAuthLayer) (it reads the claims) and in front
/// of an rmcp service whose handler is wrapped in [`ContextFiltered`](crate::ContextFiltered),
/// which enforces the set. The layer does not read the body: it refuses nothing on its own,
/// except one case: a 2026-07-28 request whose SEP-2243 headers (`Mcp-Method: tools/call`,
/// `Mcp-Name`, which rmcp checks against the body) name a visible tool that needs scopes the
/// token lacks gets 403 `insufficient_scope` with every scope the call needs, so the host can
/// step up. Such headers can only make the layer refuse, never allow: the wrapper enforces the
/// scopes again for every call, whatever the headers said.
///
/// ```
/// use a3_mcp_auth::testing::TestIssuer;
/// use a3_mcp_auth::{BearerAuthLayer, Challenge, ToolContextLayer, ToolPolicy, ToolRule, VisibleTools};
/// use axum::{Extension, Router, routing::get};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let challenge = Challenge::new("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp");
/// let policy = ToolPolicy::new().tool("add", ToolRule::any_of([("operation", "addition")]));
///
/// let app = Router::new()
///     .route("/mcp", get(|Extension(v): Extension<VisibleTools>| async move {
///         v.names().collect::<Vec<_>>().join(",")
///     }))
///     .layer(ToolContextLayer::new(policy, challenge.clone()).with_claim("contexts"))
///     .layer(BearerAuthLayer::new(issuer.verifier(resource).await, challenge));
///
/// let token = issuer.token(resource).claim("contexts", serde_json::json!(["operation=addition"])).sign();
/// let request = http::Request::get("/mcp")
///     .header("authorization", format!("Bearer {token}"))
///     .body(axum::body::Body::empty())
///     .unwrap();
/// let response = app.oneshot(request).await.unwrap();
/// let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
/// assert_eq!(body, "add");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ToolContextLayer {
    policy: Arc<ToolPolicy>,
    claim: Arc<str>,
    base_scopes: Arc<[String]>,
    challenge: Challenge,
}

impl ToolContextLayer {
    /// Applies `policy`, reading contexts from the claim `contexts` ([`DEFAULT_CONTEXT_CLAIM`]);
    /// step-up refusals carry `challenge`.
    pub fn new(policy: ToolPolicy, challenge: Challenge) -> Self {
        Self::from_arc(Arc::new(policy), challenge)
    }

    /// Like [`ToolContextLayer::new`], sharing a policy used elsewhere (e.g. in a start-up summary).
    pub fn from_arc(policy: Arc<ToolPolicy>, challenge: Challenge) -> Self {
        ToolContextLayer {
            policy,
            claim: DEFAULT_CONTEXT_CLAIM.into(),
            base_scopes: Arc::new([]),
            challenge,
        }
    }

    /// Reads contexts from the claim `claim` (use [`A3Config::context_claim`](crate::A3Config::context_claim)).
    pub fn with_claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = claim.into().into();
        self
    }

    /// The scopes every request already needs (those of the [`RequireScopeLayer`](crate::RequireScopeLayer)),
    /// listed first in step-up challenges so that the host asks for everything at once (MCP R11).
    pub fn with_base_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.base_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The policy.
    pub fn policy(&self) -> &ToolPolicy {
        &self.policy
    }

    fn step_up(&self, headers: &HeaderMap, visible: &VisibleTools) -> Option<AuthError> {
        let method = single_header(headers, "mcp-method")?;
        if method != "tools/call" {
            return None;
        }
        let name = decode_sep2243(single_header(headers, "mcp-name")?)?;
        match visible.access(&name)? {
            ToolAccess::Callable => None,
            ToolAccess::NeedsScopes(tool_scopes) => {
                let mut all: Vec<&str> = self.base_scopes.iter().map(String::as_str).collect();
                for s in tool_scopes.split(' ') {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
                Some(AuthError::InsufficientScope {
                    required: all.join(" "),
                })
            }
        }
    }
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// SEP-2243 header values are bare, or `=?base64?<standard base64 of UTF-8>?=`.
fn decode_sep2243(value: &str) -> Option<String> {
    use base64::Engine;
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

impl<S> Layer<S> for ToolContextLayer {
    type Service = ToolContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolContext {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that computes [`VisibleTools`]. See [`ToolContextLayer`].
///
/// ```
/// use a3_mcp_auth::{Challenge, ToolContext, ToolContextLayer, ToolPolicy};
/// use tower::{Layer, service_fn};
///
/// let layer = ToolContextLayer::new(ToolPolicy::new(), Challenge::new("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"));
/// let service: ToolContext<_> = layer.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct ToolContext<S> {
    inner: S,
    layer: ToolContextLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ToolContext<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (held, visible) = match req.extensions().get::<Claims>() {
            Some(claims) => {
                let held = ContextSet::from_claims(claims, &self.layer.claim);
                let visible = self.layer.policy.visible_tools(&held, claims.scopes());
                (held, visible)
            }
            None => (ContextSet::new(), VisibleTools::none()),
        };
        if let Some(e) = self.layer.step_up(req.headers(), &visible) {
            return ResponseFuture::refused(error_response(&self.layer.challenge, &e));
        }
        req.extensions_mut().insert(held);
        req.extensions_mut().insert(visible);
        ResponseFuture::inner(self.inner.call(req))
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

    #[test]
    fn rules_any_all_public() {
        let held: ContextSet = [
            "operation=addition".parse().unwrap(),
            "region=eu".parse().unwrap(),
        ]
        .into_iter()
        .collect();
        assert!(ToolRule::any_of([("operation", "x"), ("operation", "addition")]).is_visible(&held));
        assert!(!ToolRule::any_of([("operation", "x")]).is_visible(&held));
        assert!(ToolRule::all_of([("operation", "addition"), ("region", "eu")]).is_visible(&held));
        assert!(!ToolRule::all_of([("operation", "addition"), ("region", "us")]).is_visible(&held));
        let both = ToolRule::any_of([("operation", "addition")]).and_all_of([("region", "us")]);
        assert!(!both.is_visible(&held));
        assert!(
            !ToolRule::default().is_visible(&held),
            "an empty rule shows nothing"
        );
        assert!(ToolRule::public().is_visible(&ContextSet::new()));
    }

    #[test]
    fn policy_round_trips_and_rejects_typos() {
        let policy = ToolPolicy::new()
            .tool(
                "add",
                ToolRule::any_of([("operation", "addition")]).with_scopes(["calc:write"]),
            )
            .public_tool("whoami");
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(ToolPolicy::from_json_str(&json).unwrap(), policy);
        assert!(ToolPolicy::from_json_str(r#"{"tools": {"a": {"any_of": ["nokey"]}}}"#).is_err());
        assert!(ToolPolicy::from_json_str(r#"{"tool": {}}"#).is_err());
        assert!(ToolPolicy::from_json_str(r#"{"tools": {"a": {"public": "yes"}}}"#).is_err());
    }

    #[test]
    fn scopes_make_tools_need_step_up() {
        let policy = ToolPolicy::new().tool("add", ToolRule::public().with_scopes(["a", "b"]));
        let some: BTreeSet<String> = ["a".to_owned()].into();
        let all: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let held = ContextSet::new();
        assert_eq!(
            policy.visible_tools(&held, &some).access("add"),
            Some(&ToolAccess::NeedsScopes("a b".into()))
        );
        assert_eq!(
            policy.visible_tools(&held, &all).access("add"),
            Some(&ToolAccess::Callable)
        );
    }

    #[test]
    fn sep2243_names_decode() {
        assert_eq!(decode_sep2243("add").as_deref(), Some("add"));
        assert_eq!(decode_sep2243("=?base64?YWRk?=").as_deref(), Some("add"));
        assert_eq!(decode_sep2243("=?base64?!!?="), None);
    }
}
