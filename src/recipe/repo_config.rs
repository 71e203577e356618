//! `bakery.toml` at the repository root: which tags build which recipes, what pull
//! requests do, and the AWS defaults every recipe inherits.
//!
//! ```toml
//! pull_requests = "on-command"
//!
//! [[tags]]
//! pattern = "release-*"          # builds every recipe
//!
//! [[tags]]
//! pattern = "{recipe}/v*"        # docker-host/v1.2.0 builds docker-host
//!
//! [defaults]
//! region = "eu-west-1"
//! regions = ["eu-west-1", "eu-central-1"]
//! kms_key = "alias/ami"
//! account_role = "bakery-ami-copy"
//!
//! [lifecycle]                    # every recipe's, unless it sets its own
//! keep = 3
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use regex::Regex;
use serde::Serialize;

use super::aws_names;
use super::diagnostic::{did_you_mean, Diagnostics, SourceFile};
use super::reader::{Cx, Loc, Table};

/// The file name, at the repository root.
pub const FILE_NAME: &str = "bakery.toml";

/// What a pull request that touches recipes does besides validation (which always runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullRequestMode {
    /// Never build images for pull requests.
    Never,
    /// Build throwaway images when asked to with a comment on the pull request.
    #[default]
    OnCommand,
    /// Build throwaway images for every push to a pull request that touches recipes.
    Always,
}

impl PullRequestMode {
    const NAMES: [&'static str; 3] = ["never", "on-command", "always"];

    pub fn name(self) -> &'static str {
        match self {
            PullRequestMode::Never => "never",
            PullRequestMode::OnCommand => "on-command",
            PullRequestMode::Always => "always",
        }
    }
}

/// Which recipes a matching tag builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagRecipes {
    /// Every recipe in the repository.
    All,
    Named(Vec<String>),
    /// The recipe named by the pattern's `{recipe}` part.
    FromTag,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagRule {
    pub pattern: String,
    pub recipes: TagRecipes,
    /// Shared by every rule with the same pattern ([`pattern_regex`]).
    #[serde(skip)]
    regex: Arc<Regex>,
}

impl PartialEq for TagRule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.recipes == other.recipes
    }
}

impl TagRule {
    /// `pattern` is a glob over the tag name: `*` is any run of characters except `/`,
    /// `?` one such character, and `{recipe}` a recipe name.
    pub fn new(pattern: &str, recipes: Option<Vec<String>>) -> Result<Self, String> {
        let regex = pattern_regex(pattern)?;
        let has_recipe = pattern.contains("{recipe}");
        let recipes =
            match (has_recipe, recipes) {
                (true, Some(_)) => return Err(
                    "a pattern with {recipe} builds the recipe named in the tag; remove `recipes`"
                        .into(),
                ),
                (true, None) => TagRecipes::FromTag,
                (false, None) => TagRecipes::All,
                (false, Some(list)) if list.iter().any(|r| r == "*") => TagRecipes::All,
                (false, Some(list)) => TagRecipes::Named(list),
            };
        Ok(TagRule {
            pattern: pattern.to_string(),
            recipes,
            regex,
        })
    }

    /// `None` when the tag doesn't match; otherwise the recipe captured by `{recipe}`, if any.
    fn matches<'t>(&self, tag: &'t str) -> Option<Option<&'t str>> {
        let c = self.regex.captures(tag)?;
        Some(c.name("recipe").map(|m| m.as_str()))
    }
}

/// Compiled tag patterns, by regular expression, shared by every job: each job reads its
/// repository's `bakery.toml` again, and one compiled pattern with its match caches is a
/// few hundred KB (`[^/]` is a class over all of Unicode), which many builds at once would
/// otherwise each hold. Bounded: emptied when it reaches [`PATTERN_CACHE_MAX`] entries.
static PATTERN_CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const PATTERN_CACHE_MAX: usize = 256;

fn pattern_regex(pattern: &str) -> Result<Arc<Regex>, String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    let mut re = String::from("^");
    let mut rest = pattern;
    let mut recipes = 0;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{recipe}") {
            recipes += 1;
            re.push_str("(?P<recipe>[A-Za-z0-9][A-Za-z0-9._-]*)");
            rest = after;
            continue;
        }
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '{' | '}' => {
                return Err(format!(
                    "`{c}` is only allowed in {{recipe}}; patterns use *, ? and {{recipe}}"
                ))
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        rest = &rest[c.len_utf8()..];
    }
    if recipes > 1 {
        return Err("{recipe} may appear only once".into());
    }
    re.push('$');
    let mut cache = PATTERN_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(compiled) = cache.get(&re) {
        return Ok(compiled.clone());
    }
    let compiled =
        Arc::new(Regex::new(&re).map_err(|e| format!("the pattern does not compile: {e}"))?);
    if cache.len() >= PATTERN_CACHE_MAX {
        cache.clear();
    }
    cache.insert(re, compiled.clone());
    Ok(compiled)
}

/// Values every recipe inherits unless it sets its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepoDefaults {
    /// Builder region.
    pub region: Option<String>,
    /// Regions the home account gets copies in.
    pub regions: Option<Vec<String>>,
    /// KMS key for every region without its own entry in `kms_keys`.
    pub kms_key: Option<String>,
    pub kms_keys: BTreeMap<String, String>,
    /// Role name assumed in target accounts that give no `role_arn`:
    /// `arn:aws:iam::<account>:role/<account_role>`.
    pub account_role: Option<String>,
    pub instance_type: Option<String>,
    pub ssh_cidr: Option<String>,
    /// Tags on every image (a recipe's own tags win).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoConfig {
    pub pull_requests: PullRequestMode,
    pub tags: Vec<TagRule>,
    pub defaults: RepoDefaults,
    /// `[lifecycle]`: the rules every recipe inherits key by key.
    pub lifecycle: super::lifecycle::LifecycleRules,
}

impl Default for RepoConfig {
    /// The rules used when a repository has no `bakery.toml`.
    fn default() -> Self {
        RepoConfig {
            pull_requests: PullRequestMode::default(),
            tags: vec![
                TagRule::new("release-*", None).expect("built-in pattern"),
                TagRule::new("{recipe}/v*", None).expect("built-in pattern"),
            ],
            defaults: RepoDefaults::default(),
            lifecycle: Default::default(),
        }
    }
}

impl RepoConfig {
    /// The first rule the tag matches, and the recipe the tag names, if any.
    fn rule_for<'t>(&self, tag: &'t str) -> Option<(usize, Option<&'t str>)> {
        self.tags
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.matches(tag).map(|m| (i, m)))
    }

    /// The recipes a tag builds, in the order of `available` (pass them in build order,
    /// see `RecipeSet::build_order`). The first matching `[[tags]]` rule decides; a tag
    /// that matches none, or names a recipe that doesn't exist, builds nothing.
    pub fn recipes_for_tag(&self, tag: &str, available: &[String]) -> Vec<String> {
        let Some((i, named)) = self.rule_for(tag) else {
            return Vec::new();
        };
        match &self.tags[i].recipes {
            TagRecipes::All => available.to_vec(),
            TagRecipes::Named(names) => available
                .iter()
                .filter(|a| names.contains(a))
                .cloned()
                .collect(),
            TagRecipes::FromTag => available
                .iter()
                .filter(|a| Some(a.as_str()) == named)
                .cloned()
                .collect(),
        }
    }

    /// Whether two tags belong to the same release line: they match the same `[[tags]]`
    /// rule and, for `{recipe}` rules, name the same recipe. Used to find the previous
    /// release for release notes.
    pub fn same_tag_pattern(&self, a: &str, b: &str) -> bool {
        match (self.rule_for(a), self.rule_for(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    pub fn pull_request_mode(&self) -> PullRequestMode {
        self.pull_requests
    }
}

/// Reads `bakery.toml`. `recipe_refs` are the recipe names listed in `[[tags]]`, for the
/// check that each exists.
pub struct ParsedRepoConfig {
    pub config: RepoConfig,
    pub recipe_refs: Vec<Loc<String>>,
    pub diagnostics: Diagnostics,
}

pub fn parse_repo_config(file: Arc<SourceFile>) -> ParsedRepoConfig {
    let cx = Cx::new(file);
    let mut recipe_refs = Vec::new();
    let config = match cx.parse_document() {
        Some(doc) => {
            let mut root = Table::new(&cx, doc.get_ref(), 0..0, "bakery.toml");
            let c = read(&cx, &mut root, &mut recipe_refs);
            root.finish();
            c
        }
        None => RepoConfig::default(),
    };
    ParsedRepoConfig {
        config,
        recipe_refs,
        diagnostics: cx.into_diagnostics(),
    }
}

fn read(cx: &Cx, root: &mut Table<'_, '_, '_>, recipe_refs: &mut Vec<Loc<String>>) -> RepoConfig {
    let mut config = RepoConfig::default();
    // `[channels]` is read by `registry::channels_source`, with its own positioned checks.
    root.know(&["channels"]);
    if let Some(mode) = root.string("pull_requests") {
        match PullRequestMode::NAMES.iter().position(|n| *n == mode.value) {
            Some(0) => config.pull_requests = PullRequestMode::Never,
            Some(1) => config.pull_requests = PullRequestMode::OnCommand,
            Some(_) => config.pull_requests = PullRequestMode::Always,
            None => {
                let hint = match did_you_mean(&mode.value, PullRequestMode::NAMES) {
                    Some(m) => format!("did you mean \"{m}\"?"),
                    None => "use \"never\", \"on-command\" or \"always\"".into(),
                };
                cx.error(
                    mode.span,
                    format!("unknown pull_requests mode `{}`", mode.value),
                    hint,
                );
            }
        }
    }
    if let Some(rules) = root.table_array("tags") {
        config.tags.clear();
        for mut t in rules {
            let pattern = t.required_string("pattern", "\"release-*\"");
            let recipes = t.one_or_many_strings("recipes");
            let span = t.span.clone();
            t.finish();
            let Some(pattern) = pattern else { continue };
            if let Some(r) = &recipes {
                recipe_refs.extend(r.value.iter().filter(|n| n.value != "*").cloned());
            }
            match TagRule::new(&pattern.value, recipes.map(|r| r.value.into_iter().map(|n| n.value).collect())) {
                Ok(rule) => config.tags.push(rule),
                Err(e) => cx.error(
                    pattern.span.clone(),
                    format!("tag pattern `{}`: {e}", pattern.value),
                    "e.g. pattern = \"release-*\" (every recipe) or pattern = \"{recipe}/v*\" (one recipe)",
                ),
            }
            let _ = span;
        }
    }
    if let Some(t) = root.table("lifecycle", "[lifecycle]") {
        let spec = super::lifecycle::read_lifecycle(cx, t);
        config.lifecycle = super::lifecycle::LifecycleRules::from_spec(&spec);
    }
    if let Some(mut d) = root.table("defaults", "[defaults]") {
        let region = d.string("region");
        let regions = d.string_list("regions");
        let kms_key = d.string("kms_key");
        let kms_keys = d.string_map("kms_keys").unwrap_or_default();
        let account_role = d.string("account_role");
        let instance_type = d.string("instance_type");
        let ssh_cidr = d.string("ssh_cidr");
        let tags = d.string_map("tags").unwrap_or_default();
        d.finish();

        let check = |v: &Loc<String>, r: Result<(), aws_names::Invalid>| {
            if let Err(e) = r {
                cx.error(v.span.clone(), e.message, e.hint);
            }
        };
        if let Some(r) = &region {
            super::values::check_region(cx, r);
        }
        if let Some(rs) = &regions {
            super::values::check_region_list(cx, rs, "[defaults]");
        }
        if let Some(k) = &kms_key {
            check(k, aws_names::kms_key(&k.value, None));
        }
        for (r, k) in &kms_keys {
            super::values::check_region(cx, r);
            check(k, aws_names::kms_key(&k.value, Some(&r.value)));
        }
        if let Some(role) = &account_role {
            let ok = !role.value.is_empty()
                && role
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
            if !ok {
                cx.error(
                    role.span.clone(),
                    format!("`{}` is not an IAM role name", role.value),
                    "write the role's name (not its ARN), e.g. account_role = \"bakery-ami-copy\"",
                );
            }
        }
        if let Some(i) = &instance_type {
            check(i, aws_names::instance_type(&i.value));
        }
        if let Some(c) = &ssh_cidr {
            check(c, aws_names::cidr(&c.value));
        }
        for (k, v) in &tags {
            super::values::check_tag(cx, k, v.value.contains("{{").then_some(v));
        }
        config.defaults = RepoDefaults {
            region: region.map(|r| r.value),
            regions: regions.map(|r| r.value.into_iter().map(|r| r.value).collect()),
            kms_key: kms_key.map(|k| k.value),
            kms_keys: kms_keys
                .into_iter()
                .map(|(k, v)| (k.value, v.value))
                .collect(),
            account_role: account_role.map(|r| r.value),
            instance_type: instance_type.map(|i| i.value),
            ssh_cidr: ssh_cidr.map(|c| c.value),
            tags: tags.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
        };
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_job_reading_the_same_pattern_shares_one_compiled_rule() {
        // Each release job parses bakery.toml again; fifty at once must not hold fifty
        // compiled copies of the same pattern.
        let a = TagRule::new("shared-{recipe}/v*", None).unwrap();
        let b = TagRule::new("shared-{recipe}/v*", None).unwrap();
        assert!(Arc::ptr_eq(&a.regex, &b.regex));
        let other = TagRule::new("shared-*", None).unwrap();
        assert!(!Arc::ptr_eq(&a.regex, &other.regex));
        assert_eq!(b.matches("shared-web/v1"), Some(Some("web")));
        assert_eq!(other.matches("shared-web/v1"), None);
    }

    #[test]
    fn default_rules_build_all_or_one() {
        let c = RepoConfig::default();
        let all = names(&["base-ubuntu", "docker-host"]);
        assert_eq!(c.recipes_for_tag("release-0.1.0", &all), all);
        assert_eq!(
            c.recipes_for_tag("docker-host/v1.2.0", &all),
            names(&["docker-host"])
        );
        assert!(c.recipes_for_tag("nope/v1", &all).is_empty());
        assert!(c.recipes_for_tag("v1.0", &all).is_empty());
        assert!(c.recipes_for_tag("release-0.1.0/extra", &all).is_empty());
    }

    #[test]
    fn named_rules_and_same_pattern() {
        let c = RepoConfig {
            tags: vec![
                TagRule::new("web-*", Some(names(&["docker-host"]))).unwrap(),
                TagRule::new("{recipe}/v*", None).unwrap(),
                TagRule::new("release-*", Some(names(&["*"]))).unwrap(),
            ],
            ..RepoConfig::default()
        };
        let all = names(&["base-ubuntu", "docker-host"]);
        assert_eq!(c.recipes_for_tag("web-3", &all), names(&["docker-host"]));
        assert!(c.same_tag_pattern("release-0.1.0", "release-0.2.0"));
        assert!(c.same_tag_pattern("docker-host/v1", "docker-host/v2"));
        assert!(!c.same_tag_pattern("docker-host/v1", "base-ubuntu/v1"));
        assert!(!c.same_tag_pattern("release-0.1.0", "web-3"));
        assert!(!c.same_tag_pattern("other", "other"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(TagRule::new("", None).is_err());
        assert!(TagRule::new("{name}/v*", None).is_err());
        assert!(TagRule::new("{recipe}-{recipe}", None).is_err());
        assert!(TagRule::new("{recipe}/v*", Some(names(&["a"]))).is_err());
        // Regex metacharacters are literal.
        let r = TagRule::new("v1.*", None).unwrap();
        assert!(r.matches("v1.2").is_some());
        assert!(r.matches("v1x2").is_none());
    }
}
