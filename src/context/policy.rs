//! Which contexts unlock which MCP primitives: [`ContextPolicy`] with its [`ContextRule`]s (tools,
//! prompts, resources) and [`TemplateRule`]s (resource templates). What a policy decides for one
//! caller is a [`Visibility`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::uri_template::UriTemplate;
use super::visibility::Visibility;
use super::{Context, ContextSet};

/// Who may see one tool, prompt or resource: contexts (any-of and/or all-of), or everybody; and
/// which extra scopes using it needs. Part of a [`ContextPolicy`].
///
/// A rule is satisfied when it is `public`, or when at least one context was listed and the
/// caller holds at least one of `any_of` (if not empty) and every one of `all_of`. A rule that
/// lists no context and is not public shows its item to nobody.
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
pub struct ContextRule {
    /// Visible to every caller that passed the other layers, whatever their contexts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Visible to callers holding at least one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<Context>,
    /// Visible only to callers holding all of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_of: Vec<Context>,
    /// Scopes a call, `prompts/get` or `resources/read` needs beyond those the scope layer
    /// already requires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// The name [`ContextRule`] had when rules applied to tools only.
pub type ToolRule = ContextRule;

impl ContextRule {
    /// Visible to everybody.
    pub fn public() -> Self {
        ContextRule {
            public: true,
            ..Self::default()
        }
    }

    /// Visible to holders of any of `contexts`.
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`]: policies are written by the developer, and a typo
    /// should stop the server at start-up rather than silently hide an item.
    pub fn any_of<I, K, V>(contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        ContextRule {
            any_of: pairs(contexts),
            ..Self::default()
        }
    }

    /// Visible to holders of all of `contexts`.
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`] (see [`ContextRule::any_of`]).
    pub fn all_of<I, K, V>(contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        ContextRule {
            all_of: pairs(contexts),
            ..Self::default()
        }
    }

    /// Also requires all of `contexts` (combine with [`ContextRule::any_of`]).
    ///
    /// # Panics
    /// If a pair is not a valid [`Context`] (see [`ContextRule::any_of`]).
    pub fn and_all_of<I, K, V>(mut self, contexts: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.all_of.extend(pairs(contexts));
        self
    }

    /// Using the item also needs these scopes; a token without them gets `insufficient_scope`.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The extra scopes using the item needs.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether a caller holding `held` may see the item.
    pub fn is_visible(&self, held: &ContextSet) -> bool {
        holds(self.public, &self.any_of, &self.all_of, held, false)
    }
}

/// `public`, or the listed contexts are held; `unlisted` decides when none are listed.
fn holds(public: bool, any_of: &[Context], all_of: &[Context], held: &ContextSet, unlisted: bool) -> bool {
    if public {
        return true;
    }
    if any_of.is_empty() && all_of.is_empty() {
        return unlisted;
    }
    (any_of.is_empty() || any_of.iter().any(|c| held.has(c))) && all_of.iter().all(|c| held.has(c))
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

/// Who may read the instances of one resource template, and who sees the template listed.
/// Part of a [`ContextPolicy`].
///
/// Besides the fields of a [`ContextRule`], a template rule can **bind** a template variable to
/// a context key: an instance is then readable only by holders of `key=<the variable's value
/// in that instance>`. With `calc://tables/{operation}` bound `operation` → `operation`,
/// `calc://tables/addition` is readable with the context `operation=addition` and
/// `calc://tables/multiplication` is not. A binding counts as a context condition, so a rule
/// with bindings and nothing else is not empty; `any_of`/`all_of`/`public` are checked in
/// addition to the bindings.
///
/// The template is listed (`resources/templates/list`) to callers who could read at least one
/// instance: the other conditions hold and they hold some context of each bound key.
///
/// ```
/// use a3_mcp_auth::context::ContextSet;
/// use a3_mcp_auth::context::policy::TemplateRule;
///
/// let rule = TemplateRule::binding("operation", "operation");
/// let held: ContextSet = ["operation=addition".parse().unwrap()].into_iter().collect();
/// assert!(rule.is_listed(&held));
/// assert!(rule.allows_instance(&[("operation", "addition")], &held));
/// assert!(!rule.allows_instance(&[("operation", "multiplication")], &held));
/// assert!(!rule.is_listed(&ContextSet::new()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRule {
    /// Every caller that passed the other layers (bindings still apply).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Callers holding at least one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<Context>,
    /// Callers holding all of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_of: Vec<Context>,
    /// Scopes reading an instance needs beyond those the scope layer already requires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Template variable → context key: the instance's value of the variable must be held as a
    /// value of that key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bind: BTreeMap<String, String>,
}

impl From<ContextRule> for TemplateRule {
    fn from(rule: ContextRule) -> Self {
        TemplateRule {
            public: rule.public,
            any_of: rule.any_of,
            all_of: rule.all_of,
            scopes: rule.scopes,
            bind: BTreeMap::new(),
        }
    }
}

impl TemplateRule {
    /// Instances readable by holders of `context_key=<value of variable>`.
    ///
    /// # Panics
    /// If `context_key` is not a valid context key (see [`ContextRule::any_of`]).
    pub fn binding(variable: impl Into<String>, context_key: impl Into<String>) -> Self {
        Self::default().with_binding(variable, context_key)
    }

    /// Also binds `variable` to `context_key` (see [`TemplateRule::binding`]).
    ///
    /// # Panics
    /// If `context_key` is not a valid context key.
    pub fn with_binding(mut self, variable: impl Into<String>, context_key: impl Into<String>) -> Self {
        let key = context_key.into();
        assert!(valid_key(&key), "invalid context key {key:?}");
        self.bind.insert(variable.into(), key);
        self
    }

    /// Reading an instance also needs these scopes.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    fn conditions_hold(&self, held: &ContextSet) -> bool {
        holds(
            self.public,
            &self.any_of,
            &self.all_of,
            held,
            !self.bind.is_empty(),
        )
    }

    /// Whether a caller holding `held` sees the template listed.
    pub fn is_listed(&self, held: &ContextSet) -> bool {
        self.conditions_hold(held) && self.bind.values().all(|key| held.iter().any(|c| c.key() == key))
    }

    /// Whether a caller holding `held` may read the instance whose variables have the values
    /// `captures` (as [`UriTemplate::captures`] returns them). A bound variable missing from
    /// `captures` denies.
    pub fn allows_instance(&self, captures: &[(&str, &str)], held: &ContextSet) -> bool {
        self.conditions_hold(held)
            && self.bind.iter().all(|(variable, key)| {
                captures
                    .iter()
                    .find(|(name, _)| name == variable)
                    .is_some_and(|(_, value)| held.contains(key, value))
            })
    }

    /// Whether `value` for `variable` could name an instance the caller may read (for
    /// `completion/complete`): a valid value, held under the bound key if the variable is bound.
    pub fn allows_value(&self, variable: &str, value: &str, held: &ContextSet) -> bool {
        self.is_listed(held)
            && UriTemplate::is_value(value)
            && self
                .bind
                .get(variable)
                .is_none_or(|key| held.contains(key, value))
    }
}

fn valid_key(key: &str) -> bool {
    Context::new(key, "v").is_ok()
}

/// Which contexts unlock which MCP primitives, and which extra scopes using each needs:
/// tools and prompts by name, resources by exact URI, resource templates by [`UriTemplate`].
///
/// Whatever the policy does not mention is hidden (fail closed). A policy is plain data: build
/// it in code, or load it from JSON ([`ContextPolicy::from_json_str`],
/// [`ContextPolicy::from_json_file`]). Unknown fields, invalid templates and bindings of
/// variables a template lacks are errors, so a misspelt rule fails loudly instead of hiding an
/// item. Names and URIs are compared exactly.
///
/// A resource URI is decided by its exact rule in `resources` when there is one; otherwise it
/// is readable when it is an instance of some template in `resource_templates` whose rule allows
/// that instance.
///
/// ```
/// use a3_mcp_auth::{ContextPolicy, ToolRule};
/// use a3_mcp_auth::context::policy::TemplateRule;
///
/// let policy = ContextPolicy::new()
///     .tool("add", ToolRule::any_of([("operation", "addition")]))
///     .public_tool("whoami")
///     .prompt("addition_drill", ToolRule::any_of([("operation", "addition")]))
///     .public_resource("calc://constants")
///     .resource_template("calc://tables/{operation}", TemplateRule::binding("operation", "operation"));
///
/// let same = ContextPolicy::from_json_str(r#"{
///     "tools": {"add": {"any_of": ["operation=addition"]}, "whoami": {"public": true}},
///     "prompts": {"addition_drill": {"any_of": ["operation=addition"]}},
///     "resources": {"calc://constants": {"public": true}},
///     "resource_templates": {"calc://tables/{operation}": {"bind": {"operation": "operation"}}}
/// }"#).unwrap();
/// assert_eq!(policy, same);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextPolicy {
    /// The rule of each tool, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, ContextRule>,
    /// The rule of each prompt, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, ContextRule>,
    /// The rule of each resource, by exact URI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, ContextRule>,
    /// The rule of each resource template, by URI template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_templates: BTreeMap<UriTemplate, TemplateRule>,
}

/// The name [`ContextPolicy`] had when policies covered tools only; `{"tools": {…}}` files
/// parse unchanged.
pub type ToolPolicy = ContextPolicy;

/// A policy file could not be read, parsed or accepted.
///
/// ```
/// use a3_mcp_auth::ContextPolicy;
///
/// let err = ContextPolicy::from_json_str(r#"{"tools": {"add": {"anyOf": ["operation=addition"]}}}"#)
///     .unwrap_err();
/// assert!(err.to_string().contains("anyOf"));
/// let err = ContextPolicy::from_json_str(
///     r#"{"resource_templates": {"calc://tables/{operation}": {"bind": {"op": "operation"}}}}"#,
/// )
/// .unwrap_err();
/// assert!(err.to_string().contains("op"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the context policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is not a valid policy.
    #[error("invalid context policy: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON parsed, but a template rule binds something it cannot.
    #[error("invalid context policy: {0}")]
    Binding(String),
}

impl ContextPolicy {
    /// An empty policy: everything hidden.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rule of the tool `name`.
    pub fn tool(mut self, name: impl Into<String>, rule: ContextRule) -> Self {
        self.tools.insert(name.into(), rule);
        self
    }

    /// Makes the tool `name` visible to everybody.
    pub fn public_tool(self, name: impl Into<String>) -> Self {
        self.tool(name, ContextRule::public())
    }

    /// Sets the rule of the prompt `name`.
    pub fn prompt(mut self, name: impl Into<String>, rule: ContextRule) -> Self {
        self.prompts.insert(name.into(), rule);
        self
    }

    /// Makes the prompt `name` visible to everybody.
    pub fn public_prompt(self, name: impl Into<String>) -> Self {
        self.prompt(name, ContextRule::public())
    }

    /// Sets the rule of the resource with exactly this `uri`.
    pub fn resource(mut self, uri: impl Into<String>, rule: ContextRule) -> Self {
        self.resources.insert(uri.into(), rule);
        self
    }

    /// Makes the resource `uri` readable by everybody.
    pub fn public_resource(self, uri: impl Into<String>) -> Self {
        self.resource(uri, ContextRule::public())
    }

    /// Sets the rule of the resource template `uri_template` (and so of its instances).
    ///
    /// # Panics
    /// If `uri_template` is not a [`UriTemplate`], or the rule binds a variable the template
    /// does not have: policies are written by the developer, and a typo should stop the server
    /// at start-up.
    pub fn resource_template(mut self, uri_template: &str, rule: impl Into<TemplateRule>) -> Self {
        let template: UriTemplate = uri_template.parse().unwrap_or_else(|e| panic!("{e}"));
        let rule = rule.into();
        if let Err(e) = check_bindings(&template, &rule) {
            panic!("{e}");
        }
        self.resource_templates.insert(template, rule);
        self
    }

    /// Parses a JSON policy:
    /// `{"tools"?: {"<name>": RULE}, "prompts"?: {"<name>": RULE}, "resources"?: {"<uri>": RULE},
    /// "resource_templates"?: {"<uri template>": RULE + "bind"?}}` where RULE is
    /// `{"public"?, "any_of"?, "all_of"?, "scopes"?}`.
    pub fn from_json_str(json: &str) -> Result<Self, PolicyError> {
        let policy: Self = serde_json::from_str(json)?;
        for (template, rule) in &policy.resource_templates {
            check_bindings(template, rule).map_err(PolicyError::Binding)?;
        }
        Ok(policy)
    }

    /// Reads a JSON policy file (see [`ContextPolicy::from_json_str`]).
    ///
    /// ```
    /// use a3_mcp_auth::ContextPolicy;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("policy.json");
    /// std::fs::write(&path, r#"{"tools": {"whoami": {"public": true}}}"#).unwrap();
    /// let policy = ContextPolicy::from_json_file(&path).unwrap();
    /// assert!(policy.rule("whoami").unwrap().public);
    /// assert!(ContextPolicy::from_json_file(dir.path().join("missing.json")).is_err());
    /// ```
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// The rule of the tool `name`, if the policy mentions it.
    pub fn rule(&self, name: &str) -> Option<&ContextRule> {
        self.tools.get(name)
    }

    fn rules(&self) -> impl Iterator<Item = (&[Context], &[Context], &[String])> {
        let plain = self
            .tools
            .values()
            .chain(self.prompts.values())
            .chain(self.resources.values())
            .map(|r| (&r.any_of[..], &r.all_of[..], &r.scopes[..]));
        let templates = self
            .resource_templates
            .values()
            .map(|r| (&r.any_of[..], &r.all_of[..], &r.scopes[..]));
        plain.chain(templates)
    }

    /// Every extra scope some rule needs, each once (tools, then prompts, resources and
    /// templates, each in name order): what an authorization server in front of this server
    /// must offer besides the base scope, or the `insufficient_scope` challenge names a scope
    /// nobody can obtain.
    ///
    /// ```
    /// use a3_mcp_auth::{ToolPolicy, ToolRule};
    ///
    /// let policy = ToolPolicy::new()
    ///     .tool("reset", ToolRule::any_of([("role", "admin")]).with_scopes(["calc:admin"]))
    ///     .tool("wipe", ToolRule::any_of([("role", "admin")]).with_scopes(["calc:admin", "calc:wipe"]))
    ///     .resource("calc://audit", ToolRule::any_of([("role", "admin")]).with_scopes(["calc:audit"]))
    ///     .public_tool("whoami");
    /// assert_eq!(policy.scopes(), ["calc:admin", "calc:wipe", "calc:audit"]);
    /// ```
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, _, scopes) in self.rules() {
            for scope in scopes {
                if !out.contains(scope) {
                    out.push(scope.clone());
                }
            }
        }
        out
    }

    /// For start-up summaries: each context the policy mentions, with what it unlocks, plus
    /// what everybody sees under `None`. `all_of` contexts are listed too; a template whose
    /// variable is bound to a key appears as its instance for each value of that key the policy
    /// mentions anywhere (`operation=addition` → `calc://tables/addition`).
    ///
    /// ```
    /// use a3_mcp_auth::{ToolPolicy, ToolRule};
    /// use a3_mcp_auth::context::policy::TemplateRule;
    ///
    /// let policy = ToolPolicy::new()
    ///     .tool("add", ToolRule::any_of([("operation", "addition")]))
    ///     .prompt("addition_drill", ToolRule::any_of([("operation", "addition")]))
    ///     .resource_template("calc://tables/{operation}", TemplateRule::binding("operation", "operation"))
    ///     .public_tool("whoami");
    /// let unlocks = policy.unlocks();
    /// let addition = &unlocks[&Some("operation=addition".parse().unwrap())];
    /// assert_eq!(addition.tools, ["add"]);
    /// assert_eq!(addition.prompts, ["addition_drill"]);
    /// assert_eq!(addition.resources, ["calc://tables/addition"]);
    /// assert_eq!(unlocks[&None].tools, ["whoami"]);
    /// ```
    pub fn unlocks(&self) -> BTreeMap<Option<Context>, Unlocked> {
        let mut out: BTreeMap<Option<Context>, Unlocked> = BTreeMap::new();
        let mut add = |who: Option<&Context>, pick: Pick, item: &str| {
            let list = pick(out.entry(who.cloned()).or_default());
            if !list.iter().any(|i| i == item) {
                list.push(item.to_owned());
            }
        };
        let kinds: [(&BTreeMap<String, ContextRule>, Pick); 3] = [
            (&self.tools, |u| &mut u.tools),
            (&self.prompts, |u| &mut u.prompts),
            (&self.resources, |u| &mut u.resources),
        ];
        for (rules, pick) in kinds {
            for (name, rule) in rules {
                if rule.public {
                    add(None, pick, name);
                }
                for c in rule.any_of.iter().chain(&rule.all_of) {
                    add(Some(c), pick, name);
                }
            }
        }
        let mentioned: BTreeSet<&Context> = self.rules().flat_map(|(a, b, _)| a.iter().chain(b)).collect();
        for (template, rule) in &self.resource_templates {
            if rule.bind.is_empty() {
                if rule.public {
                    add(None, |u| &mut u.resources, template.as_str());
                }
                for c in rule.any_of.iter().chain(&rule.all_of) {
                    add(Some(c), |u| &mut u.resources, template.as_str());
                }
                continue;
            }
            for (variable, key) in &rule.bind {
                for c in mentioned
                    .iter()
                    .filter(|c| c.key() == key && UriTemplate::is_value(c.value()))
                {
                    let instance = template.expand(&[(variable.as_str(), c.value())]);
                    add(Some(c), |u| &mut u.resources, &instance);
                }
            }
        }
        out
    }
}

fn check_bindings(template: &UriTemplate, rule: &TemplateRule) -> Result<(), String> {
    for (variable, key) in &rule.bind {
        if !template.has_variable(variable) {
            return Err(format!("{template} has no variable {variable:?} to bind"));
        }
        if !valid_key(key) {
            return Err(format!(
                "{template} binds {variable:?} to an invalid context key {key:?}"
            ));
        }
    }
    Ok(())
}

/// The name [`Visibility`] had when it answered for tools only.
pub type VisibleTools = Visibility;

/// Which list of an [`Unlocked`] an item goes to.
type Pick = fn(&mut Unlocked) -> &mut Vec<String>;

/// What one context unlocks (see [`ContextPolicy::unlocks`]).
///
/// ```
/// let nothing = a3_mcp_auth::context::policy::Unlocked::default();
/// assert!(nothing.tools.is_empty() && nothing.prompts.is_empty() && nothing.resources.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unlocked {
    /// Tool names.
    pub tools: Vec<String>,
    /// Prompt names.
    pub prompts: Vec<String>,
    /// Resource URIs, template instances and templates.
    pub resources: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(contexts: &[&str]) -> ContextSet {
        contexts.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn rules_any_all_public() {
        let held = held(&["operation=addition", "region=eu"]);
        assert!(ContextRule::any_of([("operation", "x"), ("operation", "addition")]).is_visible(&held));
        assert!(!ContextRule::any_of([("operation", "x")]).is_visible(&held));
        assert!(ContextRule::all_of([("operation", "addition"), ("region", "eu")]).is_visible(&held));
        assert!(!ContextRule::all_of([("operation", "addition"), ("region", "us")]).is_visible(&held));
        let both = ContextRule::any_of([("operation", "addition")]).and_all_of([("region", "us")]);
        assert!(!both.is_visible(&held));
        assert!(
            !ContextRule::default().is_visible(&held),
            "an empty rule shows nothing"
        );
        assert!(ContextRule::public().is_visible(&ContextSet::new()));
    }

    #[test]
    fn policy_round_trips_and_rejects_typos() {
        let policy = ContextPolicy::new()
            .tool(
                "add",
                ContextRule::any_of([("operation", "addition")]).with_scopes(["calc:write"]),
            )
            .public_tool("whoami")
            .prompt("drill", ContextRule::any_of([("operation", "addition")]))
            .public_resource("calc://constants")
            .resource_template(
                "calc://tables/{operation}",
                TemplateRule::binding("operation", "operation").with_scopes(["calc:read"]),
            );
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(ContextPolicy::from_json_str(&json).unwrap(), policy);
        // A tools-only file reads as before and writes back the same.
        let tools_only = r#"{"tools":{"whoami":{"public":true}}}"#;
        let parsed = ContextPolicy::from_json_str(tools_only).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), tools_only);
        assert_eq!(ContextPolicy::from_json_str("{}").unwrap(), ContextPolicy::new());
        for bad in [
            r#"{"tools": {"a": {"any_of": ["nokey"]}}}"#,
            r#"{"tool": {}}"#,
            r#"{"tools": {"a": {"public": "yes"}}}"#,
            r#"{"prompts": {"a": {"bind": {"x": "y"}}}}"#,
            r#"{"resources": {"calc://x": {"publik": true}}}"#,
            r#"{"resource_templates": {"calc://{a}{b}": {"public": true}}}"#,
            r#"{"resource_templates": {"calc://{+a}": {"public": true}}}"#,
            r#"{"resource_templates": {"calc://t/{op}": {"bind": {"operation": "operation"}}}}"#,
            r#"{"resource_templates": {"calc://t/{op}": {"bind": {"op": "bad key"}}}}"#,
            r#"{"resource_templates": {"calc://t/{op}": {"bind": {"op": "a=b"}}}}"#,
            r#"{"resource_templates": {"calc://t/{op}": {"bind": ["op"]}}}"#,
            r#"{"resource_templates": {"calc://t/{op}": {"binds": {"op": "op"}}}}"#,
        ] {
            assert!(ContextPolicy::from_json_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "no variable")]
    fn builder_refuses_a_binding_of_a_missing_variable() {
        let _ = ContextPolicy::new()
            .resource_template("calc://t/{op}", TemplateRule::binding("operation", "operation"));
    }
}
