//! What one request may see and use: [`Visibility`], the caller's contexts and scopes against a
//! [`ContextPolicy`], and [`Access`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ContextSet;
use super::policy::{ContextPolicy, ContextRule, TemplateRule};
use crate::claims::Claims;

/// Whether a visible item can be used with the token's scopes.
///
/// ```
/// use std::sync::Arc;
/// use a3_mcp_auth::{Claims, ContextPolicy, ToolRule};
/// use a3_mcp_auth::context::ContextSet;
/// use a3_mcp_auth::context::visibility::{Access, Visibility};
///
/// let policy = Arc::new(ContextPolicy::new().tool("reset", ToolRule::public().with_scopes(["admin"])));
/// let claims = Claims::from_value(serde_json::json!({"scope": "mcp:call admin"})).unwrap();
/// let visible = Visibility::new(policy, ContextSet::new(), &claims);
/// assert_eq!(visible.tool("reset"), Some(Access::Allowed));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The token has every scope the item needs.
    Allowed,
    /// The token lacks some; the string lists every scope the item needs (space-separated).
    NeedsScopes(String),
}

/// What one request may see and use: the caller's contexts and scopes against a
/// [`ContextPolicy`]. [`ToolContextLayer`](crate::ToolContextLayer) puts it in the request
/// extensions; [`ContextFiltered`](crate::ContextFiltered) asks it where rmcp dispatches.
///
/// Decisions are made on demand, for the one name or URI asked about, so a request pays only
/// for what it uses. A request without this extension sees nothing at all ([`Visibility::none`]).
///
/// ```
/// use std::sync::Arc;
/// use a3_mcp_auth::{Claims, ContextPolicy, ToolRule};
/// use a3_mcp_auth::context::ContextSet;
/// use a3_mcp_auth::context::policy::TemplateRule;
/// use a3_mcp_auth::context::visibility::{Access, Visibility};
///
/// let policy = Arc::new(
///     ContextPolicy::new()
///         .tool("reset", ToolRule::public().with_scopes(["admin"]))
///         .resource_template("calc://tables/{operation}", TemplateRule::binding("operation", "operation")),
/// );
/// let held: ContextSet = ["operation=addition".parse().unwrap()].into_iter().collect();
/// let claims = Claims::from_value(serde_json::json!({"scope": "mcp:call"})).unwrap();
/// let visible = Visibility::new(policy, held, &claims);
/// assert_eq!(visible.tool("reset"), Some(Access::NeedsScopes("admin".into())));
/// assert_eq!(visible.tool("other"), None);
/// assert_eq!(visible.tools().collect::<Vec<_>>(), ["reset"]);
/// assert_eq!(visible.resource("calc://tables/addition"), Some(Access::Allowed));
/// assert_eq!(visible.resource("calc://tables/multiplication"), None);
/// assert!(visible.resource_template("calc://tables/{operation}"));
/// assert!(Visibility::none().resource("calc://tables/addition").is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Visibility {
    // One allocation per request; clones (the wrapper takes one per list) are cheap.
    caller: Option<Arc<CallerView>>,
}

#[derive(Debug)]
struct CallerView {
    policy: Arc<ContextPolicy>,
    contexts: ContextSet,
    claims: Claims,
}

impl Visibility {
    /// What a caller with `contexts` and the scopes of `claims` may see under `policy`.
    pub fn new(policy: Arc<ContextPolicy>, contexts: ContextSet, claims: &Claims) -> Self {
        Visibility {
            caller: Some(Arc::new(CallerView {
                policy,
                contexts,
                claims: claims.clone(),
            })),
        }
    }

    /// Nothing visible.
    pub fn none() -> Self {
        Self::default()
    }

    /// The caller's contexts; `None` for [`Visibility::none`].
    pub fn contexts(&self) -> Option<&ContextSet> {
        self.caller.as_ref().map(|c| &c.contexts)
    }

    fn access(caller: &CallerView, scopes: &[String]) -> Access {
        let granted = caller.claims.scopes();
        if scopes.iter().all(|s| granted.contains(s)) {
            Access::Allowed
        } else {
            Access::NeedsScopes(scopes.join(" "))
        }
    }

    fn named(
        &self,
        pick: fn(&ContextPolicy) -> &BTreeMap<String, ContextRule>,
        name: &str,
    ) -> Option<Access> {
        let caller = self.caller.as_deref()?;
        let rule = pick(&caller.policy).get(name)?;
        rule.is_visible(&caller.contexts)
            .then(|| Self::access(caller, &rule.scopes))
    }

    /// The tool `name`: `None` if hidden.
    pub fn tool(&self, name: &str) -> Option<Access> {
        self.named(|p| &p.tools, name)
    }

    /// The names of the visible tools, sorted.
    pub fn tools(&self) -> impl Iterator<Item = &str> {
        self.caller.iter().flat_map(|caller| {
            caller
                .policy
                .tools
                .iter()
                .filter(|(_, rule)| rule.is_visible(&caller.contexts))
                .map(|(name, _)| name.as_str())
        })
    }

    /// The prompt `name`: `None` if hidden.
    pub fn prompt(&self, name: &str) -> Option<Access> {
        self.named(|p| &p.prompts, name)
    }

    /// The resource `uri`, compared byte for byte: its exact rule if the policy has one, else
    /// the first template that has `uri` as an instance its rule allows; `None` if hidden.
    pub fn resource(&self, uri: &str) -> Option<Access> {
        let caller = self.caller.as_deref()?;
        if let Some(rule) = caller.policy.resources.get(uri) {
            return rule
                .is_visible(&caller.contexts)
                .then(|| Self::access(caller, &rule.scopes));
        }
        caller
            .policy
            .resource_templates
            .iter()
            .find_map(|(template, rule)| {
                let captures = template.captures(uri)?;
                rule.allows_instance(&captures, &caller.contexts)
                    .then(|| Self::access(caller, &rule.scopes))
            })
    }

    /// Whether the resource template `uri_template` (exactly as announced) is listed.
    pub fn resource_template(&self, uri_template: &str) -> bool {
        self.template_rule(uri_template)
            .is_some_and(|(caller, rule)| rule.is_listed(&caller.contexts))
    }

    /// Whether completing `variable` of the template `uri_template` with `value` may be
    /// offered: the template is listed and the value names an instance the caller may read.
    pub fn template_value(&self, uri_template: &str, variable: &str, value: &str) -> bool {
        self.template_rule(uri_template)
            .is_some_and(|(caller, rule)| rule.allows_value(variable, value, &caller.contexts))
    }

    /// The policy's own name of the `kind` (`tool`, `prompt`, `resource`) item `name`, whether
    /// or not this caller may see it: the tool or prompt name, the resource's exact URI, or the
    /// template `name` is an instance of. `None` when the policy does not name it. Metrics label
    /// items with it, so that only names the operator wrote become label values.
    pub(crate) fn policy_name(&self, kind: &str, name: &str) -> Option<&str> {
        let policy = &self.caller.as_deref()?.policy;
        let key = match kind {
            "tool" => policy.tools.get_key_value(name)?.0,
            "prompt" => policy.prompts.get_key_value(name)?.0,
            _ => match policy.resources.get_key_value(name) {
                Some((uri, _)) => uri,
                None => {
                    return policy
                        .resource_templates
                        .keys()
                        .find(|t| t.captures(name).is_some())
                        .map(|t| t.as_str());
                }
            },
        };
        Some(key)
    }

    fn template_rule(&self, uri_template: &str) -> Option<(&CallerView, &TemplateRule)> {
        let caller = self.caller.as_deref()?;
        Some((caller, caller.policy.resource_templates.get(uri_template)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(contexts: &[&str]) -> ContextSet {
        contexts.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn claims(scope: &str) -> Claims {
        Claims::from_value(serde_json::json!({ "scope": scope })).unwrap()
    }

    #[test]
    fn scopes_make_items_need_step_up() {
        let policy = Arc::new(
            ContextPolicy::new()
                .tool("add", ContextRule::public().with_scopes(["a", "b"]))
                .prompt("p", ContextRule::public().with_scopes(["a"]))
                .resource("r://x", ContextRule::public().with_scopes(["b"])),
        );
        let some = Visibility::new(policy.clone(), ContextSet::new(), &claims("a"));
        let all = Visibility::new(policy, ContextSet::new(), &claims("a b"));
        assert_eq!(some.tool("add"), Some(Access::NeedsScopes("a b".into())));
        assert_eq!(some.prompt("p"), Some(Access::Allowed));
        assert_eq!(some.resource("r://x"), Some(Access::NeedsScopes("b".into())));
        assert_eq!(all.tool("add"), Some(Access::Allowed));
        assert_eq!(all.resource("r://x"), Some(Access::Allowed));
    }

    #[test]
    fn resources_exact_rules_win_over_templates() {
        let policy = Arc::new(
            ContextPolicy::new()
                .resource("calc://tables/secret", ContextRule::any_of([("role", "admin")]))
                .resource_template(
                    "calc://tables/{operation}",
                    TemplateRule::binding("operation", "operation"),
                ),
        );
        let v = Visibility::new(
            policy,
            held(&["operation=secret", "operation=addition"]),
            &claims(""),
        );
        assert_eq!(v.resource("calc://tables/secret"), None);
        assert_eq!(v.resource("calc://tables/addition"), Some(Access::Allowed));
        assert_eq!(v.resource("calc://tables/multiplication"), None);
        assert_eq!(v.resource("calc://other"), None);
    }

    #[test]
    fn template_bindings_decide_instances_listing_and_completions() {
        let policy = Arc::new(
            ContextPolicy::new()
                .resource_template(
                    "calc://tables/{operation}",
                    TemplateRule::binding("operation", "operation"),
                )
                .resource_template(
                    "docs://{tenant}/{doc}",
                    TemplateRule::from(ContextRule::any_of([("plan", "pro")]))
                        .with_binding("tenant", "tenant"),
                )
                .resource_template("open://{x}", ContextRule::public())
                .resource_template("closed://{x}", TemplateRule::default()),
        );
        let john = Visibility::new(
            policy.clone(),
            held(&["operation=addition", "tenant=acme"]),
            &claims(""),
        );
        assert!(john.resource_template("calc://tables/{operation}"));
        assert!(john.resource("calc://tables/addition").is_some());
        for hostile in [
            "calc://tables/multiplication",
            "calc://tables/%61ddition",
            "calc://tables/addition/",
            "calc://tables/addition?operation=multiplication",
            "calc://tables/Addition",
            "calc://tables/аddition",
            "calc://tables/addition,multiplication",
            "calc://tables/addition/../multiplication",
            "calc://tables/",
        ] {
            assert_eq!(john.resource(hostile), None, "{hostile}");
        }
        // Without `plan=pro` the tenant binding alone is not enough.
        assert!(!john.resource_template("docs://{tenant}/{doc}"));
        assert_eq!(john.resource("docs://acme/plan"), None);
        let pro = Visibility::new(policy.clone(), held(&["plan=pro", "tenant=acme"]), &claims(""));
        assert!(pro.resource("docs://acme/plan").is_some());
        assert_eq!(pro.resource("docs://globex/plan"), None);
        // Public templates are open to all; a rule without any condition to nobody.
        assert!(john.resource("open://anything").is_some());
        assert!(!john.resource_template("closed://{x}"));
        assert_eq!(john.resource("closed://x"), None);
        // Nobody holding the bound key does not see the template at all.
        let nobody = Visibility::new(policy, ContextSet::new(), &claims(""));
        assert!(!nobody.resource_template("calc://tables/{operation}"));
        // Completions: only values naming a readable instance.
        assert!(john.template_value("calc://tables/{operation}", "operation", "addition"));
        assert!(!john.template_value("calc://tables/{operation}", "operation", "multiplication"));
        assert!(!john.template_value("calc://tables/{operation}", "operation", "addition/x"));
        assert!(!nobody.template_value("calc://tables/{operation}", "operation", "addition"));
        assert!(!john.template_value("calc://unknown/{operation}", "operation", "addition"));
        assert!(pro.template_value("docs://{tenant}/{doc}", "doc", "anything"));
        assert!(!pro.template_value("docs://{tenant}/{doc}", "tenant", "globex"));
    }

    #[test]
    fn policy_names_only_name_what_the_policy_has() {
        let policy = Arc::new(
            ContextPolicy::new()
                .tool("add", ContextRule::any_of([("operation", "addition")]))
                .resource_template(
                    "calc://tables/{operation}",
                    TemplateRule::binding("operation", "operation"),
                ),
        );
        let v = Visibility::new(policy, ContextSet::new(), &claims(""));
        assert_eq!(v.tool("add"), None, "hidden from this caller");
        assert_eq!(
            v.policy_name("tool", "add"),
            Some("add"),
            "but named by the policy"
        );
        assert_eq!(v.policy_name("tool", "anything else"), None);
        assert_eq!(v.policy_name("prompt", "add"), None);
        assert_eq!(
            v.policy_name("resource", "calc://tables/whatever"),
            Some("calc://tables/{operation}")
        );
        assert_eq!(v.policy_name("resource", "calc://other"), None);
        assert_eq!(Visibility::none().policy_name("tool", "add"), None);
    }

    #[test]
    fn no_visibility_sees_nothing() {
        let v = Visibility::none();
        assert_eq!(v.tool("add"), None);
        assert_eq!(v.tools().count(), 0);
        assert_eq!(v.prompt("p"), None);
        assert_eq!(v.resource("calc://constants"), None);
        assert!(!v.resource_template("calc://tables/{operation}"));
    }
}
