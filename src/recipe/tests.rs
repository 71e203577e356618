//! Parsing and checking recipes held in memory: one test per rule, each asserting the
//! exact position and message.

use super::*;

const HEAD: &str = "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"ubuntu\"\n";

/// `line:col: severity: message` for a single recipe `r` (plus an optional bakery.toml).
fn check(config: Option<&str>, recipe: &str) -> Vec<String> {
    let c = check_sources(config, &[RecipeSource::new("r", recipe)]);
    c.diagnostics
        .iter()
        .map(|d| {
            let file = if d.file == "bakery.toml" {
                "bakery.toml:"
            } else {
                ""
            };
            format!(
                "{file}{}:{}: {}: {}",
                d.line, d.column, d.severity, d.message
            )
        })
        .collect()
}

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_minimal_recipe_is_clean() {
    assert_eq!(check(None, HEAD), Vec::<String>::new());
}

#[test]
fn source_forms_are_exclusive_and_complete() {
    let r = "[source]\nami = \"ami-0123456789abcdef0\"\nrecipe = \"base\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["1:1: error: [source] mixes ami and recipe"]
    );
    let r = "[source]\nname = \"x-*\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["1:1: error: missing required key `owners` in [source]"]
    );
    let r = "[source]\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["1:1: error: [source] says nothing about the source image"]
    );
    let r = "[source]\nowners = \"amazon\"\nname = \"al2023-ami-*\"\narchitecture = \"amd64\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["4:16: error: `amd64` is not an EC2 architecture"]
    );
    let r =
        "source = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["1:10: error: `source` must be a table, found a string"]
    );
}

#[test]
fn connect_modes() {
    assert_eq!(
        check(None, &with_head("connect = \"public-ip\"\n")),
        vec!["6:11: error: unknown connect mode `public-ip`"]
    );
    assert_eq!(
        check(
            None,
            &with_head("connect = { host = \"127.0.0.1\", prot = 2222 }\n")
        ),
        vec!["6:33: error: unknown key `prot` in [builder.connect]"]
    );
    assert_eq!(
        check(
            None,
            &with_head("connect = { host = \"127.0.0.1\", port = 2222 }\n")
        ),
        Vec::<String>::new()
    );
}

#[test]
fn step_and_check_types_get_did_you_mean() {
    let r = with_head("[[provision]]\ntype = \"shel\"\ninline = [\"true\"]\n[[verify]]\ntype = \"commands\"\ncommand = \"true\"\n");
    assert_eq!(
        check(None, &r),
        vec![
            "7:8: error: unknown provision type `shel`",
            "10:8: error: unknown verify type `commands`"
        ]
    );
    let c = check_sources(None, &[RecipeSource::new("r", r)]);
    assert_eq!(
        c.diagnostics.iter().next().unwrap().hint.as_deref(),
        Some("did you mean \"shell\"?")
    );
}

#[test]
fn shell_steps_need_exactly_one_of_inline_and_script() {
    let r = with_head("[[provision]]\ntype = \"shell\"\n[[provision]]\ntype = \"shell\"\ninline = []\n[[provision]]\ntype = \"shell\"\ninline = \"true\"\nscript = \"x.sh\"\n");
    assert_eq!(
        check(None, &r),
        vec![
            "6:1: error: [[provision]] #1 has neither `inline` nor `script`",
            "10:10: error: `inline` in [[provision]] #2 has no commands",
            "14:10: error: [[provision]] #3 has both `inline` and `script`",
        ]
    );
}

#[test]
fn file_steps_check_mode_and_destination() {
    let r = with_head("[[provision]]\ntype = \"file\"\nsource = \"a\"\ndestination = \"etc/a\"\nmode = \"644x\"\n");
    assert_eq!(
        check(None, &r),
        vec![
            "9:15: error: `destination` must be an absolute path on the builder",
            "10:8: error: `644x` is not an octal file mode",
        ]
    );
}

#[test]
fn env_names_timeouts_and_stamp_keys() {
    let r = with_head("[[provision]]\ntype = \"shell\"\ninline = [\"true\"]\nenv = { \"1BAD\" = \"x\" }\ntimeout = \"soon\"\n[stamp]\npath = \"etc/release\"\nextra = { GIT_SHA = \"x\", \"team-name\" = \"y\" }\n");
    assert_eq!(
        check(None, &r),
        vec![
            "9:9: error: `1BAD` is not an environment variable name",
            "10:11: error: `timeout` in [[provision]] #1 is not a duration: expected number at 0",
            "12:8: error: `path` in [stamp] must be an absolute path on the builder",
            "13:11: error: `GIT_SHA` is written by bakery into every release file",
            "13:26: error: `team-name` is not a KEY for a KEY=VALUE line",
        ]
    );
}

#[test]
fn variables_are_typed() {
    let r = with_head("[variables]\na = { type = \"number\", default = \"4\" }\nb = { type = \"float\" }\nc = { description = \"no type\" }\nd = { type = \"list\", default = [1] }\n\"bad-name\" = 1\n");
    assert_eq!(
        check(None, &r),
        vec![
            "7:34: error: variable `a` is declared number but its default is a string",
            "8:14: error: unknown variable type `float`",
            "9:5: error: variable `c` has neither a type nor a default",
            "10:32: error: variable `d` has a default of a list holding an integer; list items must be strings",
            "11:1: error: variable name `bad-name` is not a plain identifier",
        ]
    );
}

#[test]
fn reserved_tags_and_literal_only_values() {
    let r = with_head("[image]\ntags = { Name = \"x\", \"bakery:recipe\" = \"y\", \"aws:foo\" = \"z\" }\n[distribute]\nregions = [\"{{ var.region }}\"]\n[variables]\nregion = \"eu-west-1\"\n");
    assert_eq!(
        check(None, &r),
        vec![
            "7:10: error: tag `Name` is set by bakery on every image",
            "7:22: error: tag `bakery:recipe` is set by bakery on every image",
            "7:45: error: tag `aws:foo` uses the reserved aws: prefix",
            "9:12: error: a region cannot use `{{ ... }}`",
        ]
    );
}

#[test]
fn accounts_need_a_role_and_kms_keys_a_target_region() {
    let r = with_head("[distribute]\nregions = [\"eu-west-1\"]\nkms_keys = { us-east-1 = \"alias/ami\" }\n[[distribute.accounts]]\naccount_id = \"111111111111\"\n[[distribute.accounts]]\naccount_id = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/r\"\n");
    assert_eq!(
        check(None, &r),
        vec![
            "8:14: error: kms_keys names `us-east-1`, which is not a target region of [distribute]",
            "9:1: error: account `111111111111` has no role_arn",
            "12:14: error: account `111111111111` is listed twice in [[distribute.accounts]]",
        ]
    );
    // A default role name in bakery.toml fills the gap.
    let r = with_head("[[distribute.accounts]]\naccount_id = \"111111111111\"\n");
    assert_eq!(
        check(Some("[defaults]\naccount_role = \"copy\"\n"), &r),
        Vec::<String>::new()
    );
}

#[test]
fn a_shared_kms_key_arn_must_fit_every_region() {
    let r = with_head("[distribute]\nregions = [\"eu-west-1\", \"us-east-1\"]\nkms_key = \"arn:aws:kms:eu-west-1:111111111111:alias/ami\"\n");
    assert_eq!(
        check(None, &r),
        vec!["8:11: error: KMS key `arn:aws:kms:eu-west-1:111111111111:alias/ami` is in eu-west-1, but this copy goes to us-east-1"]
    );
}

#[test]
fn warnings_do_not_fail_validation() {
    let r = with_head("[distribute]\nencrypted = false\nregions = [\"eu-west-7\"]\n");
    let c = check_sources(None, &[RecipeSource::new("r", r.clone())]);
    assert!(c.is_ok());
    assert_eq!(
        check(None, &r),
        vec![
            "7:13: warning: images will be copied unencrypted",
            "8:12: warning: `eu-west-7` is not a region bakery knows",
        ]
    );
}

#[test]
fn source_recipe_must_reach_the_builder_region() {
    let base = "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"u\"\n[distribute]\nregions = [\"eu-west-1\"]\n";
    let app = "[source]\nrecipe = \"base\"\n[builder]\nregion = \"us-east-1\"\nssh_user = \"u\"\n";
    let c = check_sources(
        None,
        &[
            RecipeSource::new("base", base),
            RecipeSource::new("app", app),
        ],
    );
    let d: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        vec![
            "recipes/app/recipe.toml:2:10: error: recipe `base` has no image in us-east-1, where `app` builds\n    hint: add us-east-1 to the regions of base's [distribute], or build app in one of them"
        ]
    );
}

#[test]
fn secrets_are_refused() {
    let r = with_head("[[provision]]\ntype = \"shell\"\ninline = [\"export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\"]\n");
    assert_eq!(
        check(None, &r),
        vec!["8:37: error: this looks like an AWS access key id"]
    );
    assert_eq!(
        check(Some("# ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"), HEAD),
        vec!["bakery.toml:1:3: error: this looks like a GitHub token"]
    );
}

#[test]
fn missing_bakery_toml_uses_built_in_rules() {
    let c = check_sources(None, &[RecipeSource::new("r", HEAD)]);
    assert!(c.set.config_file.is_none());
    assert_eq!(c.set.config, RepoConfig::default());
    assert_eq!(c.set.recipes_for_tag("release-1"), vec!["r"]);
    assert_eq!(c.set.recipes_for_tag("r/v2"), vec!["r"]);
    assert_eq!(c.set.config.pull_request_mode(), PullRequestMode::OnCommand);
}

#[test]
fn builder_region_may_come_from_bakery_toml_only() {
    let r = "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nssh_user = \"u\"\n";
    assert_eq!(
        check(None, r),
        vec!["3:1: error: missing required key `region` in [builder]"]
    );
    assert_eq!(
        check(Some("[defaults]\nregion = \"eu-west-1\"\n"), r),
        Vec::<String>::new()
    );
}

#[test]
fn invalid_recipe_names_are_reported() {
    let c = check_sources(None, &[RecipeSource::new("Bad Name", HEAD)]);
    let d: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        vec!["recipes/Bad Name/recipe.toml:1:1: error: `Bad Name` is not a valid recipe name\n    hint: rename the folder: lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"]
    );
}

#[test]
fn touched_recipes_follow_shared_files() {
    let a = with_head("[[provision]]\ntype = \"shell\"\nscript = \"../../scripts/common.sh\"\n");
    let c = check_sources(
        None,
        &[RecipeSource::new("a", a), RecipeSource::new("b", HEAD)],
    );
    assert_eq!(c.set.recipes_touched_by(&["scripts/common.sh"]), vec!["a"]);
    assert_eq!(c.set.recipes_touched_by(&["recipes/b/notes.md"]), vec!["b"]);
    assert!(touches_recipes(&["recipes/gone/recipe.toml"]));
    assert!(!touches_recipes(&["src/lib.rs", "recipesx"]));
}

#[test]
fn ansible_extra_args_cannot_choose_the_host_or_the_connection() {
    let r = with_head(
        "[[provision]]\ntype = \"ansible\"\nplaybook = \"site.yml\"\nextra_args = [\"-v\", \"-c\", \"local\"]\n",
    );
    assert_eq!(
        check(None, &r),
        vec!["9:21: error: extra_args: `-c` chooses the connection; bakery runs the playbook on the builder itself, against localhost over a local connection"]
    );
    let r = with_head(
        "[[provision]]\ntype = \"ansible\"\nplaybook = \"site.yml\"\nextra_args = [\"--tags\", \"docker\", \"--diff\"]\n",
    );
    assert_eq!(check(None, &r), Vec::<String>::new());
}

#[test]
fn the_builder_kms_key_is_a_key_in_the_builder_region() {
    let b = "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"ubuntu\"\n";
    for ok in [
        "alias/ami",
        "arn:aws:kms:eu-west-1:111111111111:alias/ami",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
    ] {
        assert_eq!(
            check(None, &format!("{b}kms_key = \"{ok}\"\n")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    assert_eq!(
        check(None, &format!("{b}kms_key = \"ami\"\n")),
        vec!["6:11: error: `ami` is not a KMS key id, alias or ARN"]
    );
    assert_eq!(
        check(
            None,
            &format!("{b}kms_key = \"arn:aws:kms:us-east-1:111111111111:alias/ami\"\n")
        ),
        vec!["6:11: error: KMS key `arn:aws:kms:us-east-1:111111111111:alias/ami` is not in the builder's region eu-west-1"]
    );
    assert_eq!(
        check(None, &format!("{b}kms_key = \"{{{{ version }}}}\"\n")).len(),
        1,
        "a template is not a key"
    );
}
