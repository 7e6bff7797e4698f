//! Which contexts make each tool visible: [`ToolPolicy`], [`ToolRule`], and what a policy
//! computes for one request, [`VisibleTools`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Context, ContextSet};

/// Who may see one tool: contexts (any-of and/or all-of), or everybody; and which extra scopes
/// a call needs. Part of a [`ToolPolicy`].
///
/// A rule is satisfied when the tool is `public`, or when at least one context was listed and
/// the caller holds at least one of `any_of` (if not empty) and every one of `all_of`.
/// A rule that lists no context and is not public shows the tool to nobody.
///
/// ```
/// use a3_mcp_auth::ToolRule;
/// use a3_mcp_auth::context::ContextSet;
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
/// use a3_mcp_auth::{ToolPolicy, ToolRule};
/// use a3_mcp_auth::context::ContextSet;
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
/// use a3_mcp_auth::{ToolPolicy, ToolRule};
/// use a3_mcp_auth::context::ContextSet;
/// use a3_mcp_auth::context::policy::ToolAccess;
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

/// The tools one request may see and call: computed by [`ToolContextLayer`](crate::ToolContextLayer) from the verified
/// claims and the [`ToolPolicy`], stored in the request extensions, and enforced by
/// [`ContextFiltered`](crate::ContextFiltered) where rmcp dispatches.
///
/// A request without this extension sees no tool at all.
///
/// ```
/// use a3_mcp_auth::{ToolPolicy, ToolRule};
/// use a3_mcp_auth::context::ContextSet;
/// use a3_mcp_auth::context::policy::ToolAccess;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
