//! Recipes end to end: the broken-recipe fixtures under `tests/fixtures/recipes/` each give
//! their precise errors, the example recipes validate and plan, and the `bakery validate`
//! and `bakery plan` commands behave as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bakery::recipe::{load_repo, Diagnostic};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/recipes").join(name)
}

/// `file:line:col: message` for every diagnostic (the hint is asserted separately where
/// it matters).
fn errors_of(root: &Path) -> Vec<String> {
    let checked = load_repo(root).expect("fixture loads");
    checked
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
        .collect()
}

fn diagnostics_of(root: &Path) -> Vec<Diagnostic> {
    load_repo(root)
        .expect("fixture loads")
        .diagnostics
        .into_vec()
}

fn hint_of(diags: &[Diagnostic], message_start: &str) -> String {
    diags
        .iter()
        .find(|d| d.message.starts_with(message_start))
        .unwrap_or_else(|| panic!("no diagnostic starting with {message_start:?} in {diags:#?}"))
        .hint
        .clone()
        .unwrap_or_default()
}

fn bakery(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(args)
        .current_dir(cwd)
        .env_remove("BAKERY_CONFIG")
        .output()
        .expect("bakery runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn syntax_error_is_positioned() {
    assert_eq!(
        errors_of(&fixture("syntax")),
        vec!["recipes/broken/recipe.toml:4:9: TOML syntax error: unclosed table, expected `]`"]
    );
}

#[test]
fn unknown_keys_are_reported_with_did_you_mean() {
    let root = fixture("unknown-keys");
    assert_eq!(
        errors_of(&root),
        vec![
            "recipes/typos/recipe.toml:1:1: unknown key `descripton` in the recipe",
            "recipes/typos/recipe.toml:8:1: unknown key `instnce_type` in [builder]",
            "recipes/typos/recipe.toml:10:1: unknown key `colour` in [builder]",
            "recipes/typos/recipe.toml:15:1: unknown key `timout` in [[provision]] #1",
        ]
    );
    let d = diagnostics_of(&root);
    assert_eq!(
        hint_of(&d, "unknown key `descripton`"),
        "did you mean `description`?"
    );
    assert_eq!(
        hint_of(&d, "unknown key `instnce_type`"),
        "did you mean `instance_type`?"
    );
    assert_eq!(
        hint_of(&d, "unknown key `timout`"),
        "did you mean `timeout`?"
    );
    assert!(
        hint_of(&d, "unknown key `colour`")
            .starts_with("remove it; the keys allowed here are: connect,"),
        "a key with no near match lists the allowed keys"
    );
}

#[test]
fn wrong_types_are_reported_each() {
    let root = fixture("wrong-types");
    assert_eq!(
        errors_of(&root),
        vec![
            "recipes/types/recipe.toml:7:18: `volume_size_gb` in [builder] must be an integer, found a string",
            "recipes/types/recipe.toml:8:19: `imdsv2_required` in [builder] must be a boolean, found a string",
            "recipes/types/recipe.toml:12:19: every item of `inline` in [[provision]] #1 must be a string, found an integer",
            "recipes/types/recipe.toml:13:8: `sudo` in [[provision]] #1 must be a boolean, found an integer",
            "recipes/types/recipe.toml:16:11: `regions` in [distribute] must be an array of strings, found a string",
        ]
    );
    let d = diagnostics_of(&root);
    assert_eq!(
        hint_of(&d, "`volume_size_gb`"),
        "write it as volume_size_gb = 12 (no quotes)"
    );
}

#[test]
fn missing_required_fields_point_at_their_table() {
    assert_eq!(
        errors_of(&fixture("missing-fields")),
        vec![
            "recipes/incomplete/recipe.toml:1:1: missing required key `ssh_user` in [builder]",
            "recipes/incomplete/recipe.toml:1:1: missing required table [source]",
            "recipes/incomplete/recipe.toml:4:1: missing required key `destination` in [[provision]] #1",
            "recipes/incomplete/recipe.toml:8:1: missing required key `type` in [[verify]] #1",
        ]
    );
}

#[test]
fn unknown_variable_references_point_at_the_reference() {
    let root = fixture("unknown-vars");
    assert_eq!(
        errors_of(&root),
        vec![
            "recipes/vars/recipe.toml:13:31: unknown variable `tool`",
            "recipes/vars/recipe.toml:13:54: unknown reference `{{ verison }}`",
            "recipes/vars/recipe.toml:16:28: unknown variable `flavour`",
        ]
    );
    let d = diagnostics_of(&root);
    assert_eq!(
        hint_of(&d, "unknown variable `tool`"),
        "did you mean `{{ var.tools }}`?"
    );
    assert_eq!(
        hint_of(&d, "unknown reference"),
        "did you mean `{{ version }}`?"
    );
}

/// Copies a fixture into a fresh temporary folder, so a test can add what git can't
/// hold portably (symlinks) without touching the source tree.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(&fixture(name), &repo);
    (tmp, repo)
}

#[test]
fn paths_escaping_the_repository_or_missing_are_rejected() {
    let (tmp, repo) = copy_fixture("paths");
    // A playbook that is a symlink to a file outside the repository.
    let outside = tmp.path().join("outside.yml");
    std::fs::write(&outside, "- hosts: all\n").unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("recipes/paths/linked.yml")).unwrap();

    let errors = errors_of(&repo);
    assert_eq!(
        errors,
        vec![
            "recipes/paths/recipe.toml:10:10: file path `../../../outside.sh` escapes the repository".to_string(),
            "recipes/paths/recipe.toml:14:10: file path `/etc/passwd` is absolute".to_string(),
            "recipes/paths/recipe.toml:19:10: `recipes/paths/missing.sh` does not exist".to_string(),
            format!(
                "recipes/paths/recipe.toml:23:12: `recipes/paths/linked.yml` leaves the checkout (`recipes/paths/linked.yml` is a symlink to `{}`)",
                outside.display()
            ),
        ],
        "`../shared/ok.sh` stays inside the repository and is accepted"
    );
}

#[test]
fn symlinks_inside_the_repository_are_accepted() {
    let (_tmp, repo) = copy_fixture("paths");
    std::os::unix::fs::symlink("../shared/ok.sh", repo.join("recipes/paths/linked.yml")).unwrap();
    let errors = errors_of(&repo);
    assert!(
        !errors.iter().any(|e| e.contains("linked.yml")),
        "a symlink to a file inside the repository is fine: {errors:#?}"
    );
}

#[test]
fn aws_identifiers_are_checked() {
    let root = fixture("aws-ids");
    assert_eq!(
        errors_of(&root),
        vec![
            "recipes/ids/recipe.toml:2:7: `ami-12345` is not an AMI id",
            "recipes/ids/recipe.toml:5:10: `eu-wset-1` is not an AWS region",
            "recipes/ids/recipe.toml:9:38: region `eu-west-1` is listed twice in [distribute]",
            "recipes/ids/recipe.toml:10:11: `ami` is not a KMS key id, alias or ARN",
            "recipes/ids/recipe.toml:11:26: KMS key `arn:aws:kms:eu-west-1:111111111111:alias/ami` is in eu-west-1, but this copy goes to us-east-1",
            "recipes/ids/recipe.toml:14:14: `1111` is not an AWS account id",
            "recipes/ids/recipe.toml:15:12: `arn:aws:iam::111111111111:user/bakery` is not an IAM role ARN",
            "recipes/ids/recipe.toml:19:12: role `arn:aws:iam::333333333333:role/bakery` is in account 333333333333, not 222222222222",
            "recipes/ids/recipe.toml:20:25: region `us-east-1` is listed twice in account 222222222222",
            "recipes/ids/recipe.toml:23:16: `12345678901x` is not an AWS account id",
            "recipes/ids/recipe.toml:24:22: `o-a1b2c3d4e5` is not an AWS Organizations organization ARN",
        ]
    );
    let d = diagnostics_of(&root);
    assert_eq!(hint_of(&d, "`eu-wset-1`"), "did you mean `eu-west-1`?");
    assert_eq!(
        hint_of(&d, "region `eu-west-1` is listed twice"),
        "remove the second `eu-west-1`"
    );
}

#[test]
fn source_recipes_must_exist_and_not_cycle() {
    let root = fixture("links");
    assert_eq!(
        errors_of(&root),
        vec![
            "recipes/app/recipe.toml:2:10: source recipe `bsae` does not exist",
            "recipes/ping/recipe.toml:2:10: recipes source each other in a cycle: ping → pong → ping",
            "recipes/pong/recipe.toml:2:10: recipes source each other in a cycle: pong → ping → pong",
        ]
    );
    let d = diagnostics_of(&root);
    assert_eq!(
        hint_of(&d, "source recipe `bsae`"),
        "did you mean \"base\"?"
    );
}

#[test]
fn image_name_must_change_with_the_version() {
    assert_eq!(
        errors_of(&fixture("image-name")),
        vec!["recipes/fixed/recipe.toml:9:8: the image name is not unique per version: it does not use `{{ version }}`"]
    );
}

#[test]
fn repo_config_errors_are_positioned() {
    assert_eq!(
        errors_of(&fixture("repo-config")),
        vec![
            "bakery.toml:1:17: unknown pull_requests mode `sometimes`",
            "bakery.toml:5:12: tag rule names recipe `web`, which does not exist",
            "bakery.toml:8:11: tag pattern `{recipe}/{version}`: `{` is only allowed in {recipe}; patterns use *, ? and {recipe}",
            "bakery.toml:12:25: region `eu-west-1` is listed twice in [defaults]",
            "bakery.toml:13:11: `alias/` is not a KMS key id, alias or ARN",
            "bakery.toml:14:10: tag `Name` is set by bakery on every image",
        ]
    );
}

#[test]
fn lifecycle_rules_are_checked_where_they_are_written() {
    let diags = diagnostics_of(&fixture("lifecycle"));
    let errors: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
        .collect();
    assert_eq!(
        errors,
        vec![
            "bakery.toml:2:8: `keep` in [lifecycle] is 0, outside 1..=10000",
            "bakery.toml:4:20: `deregister_after` (7days) must be longer than `deprecate_after` (30days)",
            "recipes/app/recipe.toml:9:8: `keep` in [lifecycle] must be an integer, found a string",
            "recipes/app/recipe.toml:10:20: `deregister_after` in [lifecycle] is not a duration: expected number at 0",
            "recipes/app/recipe.toml:11:1: unknown key `grace` in [lifecycle]",
        ]
    );
    assert_eq!(
        hint_of(&diags, "unknown key `grace`"),
        "did you mean `grace_period`?"
    );
}

#[test]
fn example_recipes_validate_cleanly() {
    let checked = load_repo(&repo_root()).unwrap();
    assert!(
        checked.diagnostics.is_empty(),
        "the examples have diagnostics:\n{}",
        checked.diagnostics
    );
    assert_eq!(
        checked.set.build_order(),
        vec!["base-ubuntu", "debian-ova", "docker-host"]
    );
    assert_eq!(
        checked.set.recipes_for_tag("release-0.1.0"),
        vec!["base-ubuntu", "debian-ova", "docker-host"]
    );
    // The OVA example builds on the bot's own machine only.
    let ova = &checked.set.recipes["debian-ova"];
    assert!(ova.qemu.is_some());
    assert!(!ova.has_ec2_builder());
    assert_eq!(
        checked.set.recipes_for_tag("docker-host/v1.0.0"),
        vec!["docker-host"]
    );
    assert_eq!(
        checked
            .set
            .recipes_touched_by(&["recipes/docker-host/docker.yml", "README.md"]),
        vec!["docker-host"]
    );
    assert_eq!(
        checked.set.recipes_touched_by(&["bakery.toml"]),
        vec!["base-ubuntu", "debian-ova", "docker-host"]
    );
    assert!(checked.set.recipes_touched_by(&["src/main.rs"]).is_empty());
}

#[test]
fn validate_command_passes_on_the_examples() {
    let o = bakery(&["validate", "recipes/"], &repo_root());
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout(&o), "3 recipes, bakery.toml: ok\n");

    let o = bakery(&["validate", "recipes/docker-host"], &repo_root());
    assert!(o.status.success());
    assert_eq!(stdout(&o), "1 recipe, bakery.toml: ok\n");
}

#[test]
fn validate_command_fails_with_every_error_as_text_and_json() {
    let root = fixture("aws-ids");
    let o = bakery(&["validate"], &root);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.starts_with(
        "recipes/ids/recipe.toml:2:7: error: `ami-12345` is not an AMI id\n    hint: an AMI id is ami- followed by"
    ), "{text}");
    assert!(
        text.ends_with("1 recipe, no bakery.toml (built-in defaults): 11 errors\n"),
        "{text}"
    );

    let o = bakery(
        &["validate", root.to_str().unwrap(), "--format", "json"],
        &repo_root(),
    );
    assert_eq!(o.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("validate prints JSON");
    assert_eq!(json["ok"], false);
    assert_eq!(json["errors"], 11);
    assert_eq!(json["recipes"], serde_json::json!(["ids"]));
    let first = &json["diagnostics"][0];
    assert_eq!(
        first,
        &serde_json::json!({
            "file": "recipes/ids/recipe.toml",
            "line": 2,
            "column": 7,
            "end_line": 2,
            "end_column": 18,
            "severity": "error",
            "message": "`ami-12345` is not an AMI id",
            "hint": "an AMI id is ami- followed by 8 or 17 hex digits, e.g. ami-0123456789abcdef0",
        })
    );
}

#[test]
fn plan_command_prints_the_docker_host_plan() {
    let o = bakery(
        &[
            "plan",
            "docker-host",
            "--version",
            "release-0.1.0",
            "--git-sha",
            "0123456789abcdef0123456789abcdef01234567",
            "--build-time",
            "2025-03-01T12:00:00Z",
        ],
        &repo_root(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    insta::assert_snapshot!("docker_host_plan", stdout(&o));
}

#[test]
fn plan_command_json_is_the_build_plan() {
    let o = bakery(
        &[
            "plan",
            "base-ubuntu",
            "--version",
            "release-0.1.0",
            "--git-sha",
            "0123456789abcdef0123456789abcdef01234567",
            "--build-time",
            "2025-03-01T12:00:00Z",
            "--var",
            "tools=curl,jq",
            "--format",
            "json",
        ],
        &repo_root(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: bakery::plan::model::BuildPlan =
        serde_json::from_slice(&o.stdout).expect("plan --format json prints a BuildPlan");
    assert_eq!(plan.image.name, "base-ubuntu-24.04-release-0.1.0");
    let install = plan
        .provision
        .iter()
        .find_map(|s| match s {
            bakery::plan::model::ProvisionStep::Shell(s)
                if s.name == "Install troubleshooting tools" =>
            {
                Some(s.run.clone())
            }
            _ => None,
        })
        .expect("install step");
    assert_eq!(
        install,
        bakery::plan::model::ShellRun::Inline {
            commands: vec![
                "apt-get -o DPkg::Lock::Timeout=600 update".into(),
                "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends curl jq"
                    .into(),
                "apt-get clean".into()
            ]
        },
        "--var tools=curl,jq replaces the list default"
    );
}

#[test]
fn plan_command_reads_head_from_git() {
    let (_tmp, repo) = copy_fixture("image-name");
    // A valid single recipe in a fresh git repository.
    std::fs::write(
        repo.join("recipes/fixed/recipe.toml"),
        "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"ubuntu\"\n",
    )
    .unwrap();
    let args = ["plan", "fixed", "--version", "v1", "--format", "json"];

    let o = bakery(&args, &repo);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["git_sha"], "uncommitted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not in a git repository"));

    let git = git2::Repository::init(&repo).unwrap();
    let mut index = git.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.com").unwrap();
    let commit = git
        .commit(Some("HEAD"), &sig, &sig, "recipes", &tree, &[])
        .unwrap();

    let o = bakery(&args, &repo);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["git_sha"], commit.to_string());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    std::fs::write(repo.join("recipes/fixed/notes.txt"), "changed\n").unwrap();
    let o = bakery(&args, &repo);
    assert!(String::from_utf8_lossy(&o.stderr).contains("recipes have uncommitted changes"));
}

#[test]
fn plan_command_refuses_invalid_recipes_and_unknown_names() {
    let o = bakery(
        &["plan", "ids", "--version", "v1", "--git-sha", "x"],
        &fixture("aws-ids"),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the recipes have 11 error(s)"), "{err}");
    assert!(
        err.contains("recipes/ids/recipe.toml:5:10: error: `eu-wset-1` is not an AWS region"),
        "{err}"
    );

    let o = bakery(
        &["plan", "docker-hots", "--version", "v1", "--git-sha", "x"],
        &repo_root(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no recipe named `docker-hots`; did you mean `docker-host`?"),
        "{err}"
    );
}

/// A checkout beside a host-only folder holding a secret, as a fork's pull request would
/// find bakery's host: the checkout may link to the host's files, and validating it must
/// neither read them nor tell whether they exist.
struct HostileCheckout {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    host: PathBuf,
    secret: String,
}

impl HostileCheckout {
    fn new() -> HostileCheckout {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("checkout");
        let host = tmp.path().join("etc-bakery");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        let secret = format!("hostsecret{}", uuid::Uuid::new_v4().simple());
        // TOML, so a reader that followed the link would name the key in "unknown key".
        std::fs::write(
            host.join("bakery.toml"),
            format!("{secret} = \"{secret}-value\"\n[webhook]\nsecret = \"{secret}\"\n"),
        )
        .unwrap();
        HostileCheckout {
            _tmp: tmp,
            repo,
            host,
            secret,
        }
    }

    fn link(&self, rel: &str, to: &Path) {
        let at = self.repo.join(rel);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, at).unwrap();
    }

    fn write(&self, rel: &str, text: &str) {
        let at = self.repo.join(rel);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }

    /// Everything validation says: each diagnostic with its hint, and `bakery validate`'s
    /// text and JSON output.
    fn validation_output(&self) -> String {
        let mut out = String::new();
        for d in diagnostics_of(&self.repo) {
            out.push_str(&format!(
                "{}:{}:{}: {} ({})\n",
                d.file,
                d.line,
                d.column,
                d.message,
                d.hint.unwrap_or_default()
            ));
        }
        for args in [
            &["validate", "."][..],
            &["validate", "--format", "json", "."],
        ] {
            let o = bakery(args, &self.repo);
            assert!(!o.status.success(), "validation passed: {}", stdout(&o));
            out.push_str(&stdout(&o));
            out.push_str(&String::from_utf8_lossy(&o.stderr));
        }
        out
    }

    fn assert_nothing_read(&self, out: &str) {
        assert!(
            !out.contains(&self.secret),
            "validation read the host's file:\n{out}"
        );
    }
}

const PLAIN_RECIPE: &str = "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"ubuntu\"\n";

#[test]
fn a_recipe_toml_linked_to_a_host_file_is_not_read() {
    let c = HostileCheckout::new();
    c.link("recipes/x/recipe.toml", &c.host.join("bakery.toml"));
    let out = c.validation_output();
    c.assert_nothing_read(&out);
    assert!(
        out.contains("recipes/x/recipe.toml:1:1: `recipes/x/recipe.toml` leaves the checkout"),
        "{out}"
    );
}

#[test]
fn a_bakery_toml_linked_to_a_host_file_is_not_read() {
    let c = HostileCheckout::new();
    c.link("bakery.toml", &c.host.join("bakery.toml"));
    c.write("recipes/x/recipe.toml", PLAIN_RECIPE);
    let out = c.validation_output();
    c.assert_nothing_read(&out);
    assert!(
        out.contains("bakery.toml:1:1: `bakery.toml` leaves the checkout"),
        "{out}"
    );
}

#[test]
fn a_recipes_folder_linked_to_a_host_folder_is_not_read() {
    let c = HostileCheckout::new();
    std::fs::create_dir_all(c.host.join("x")).unwrap();
    std::fs::copy(c.host.join("bakery.toml"), c.host.join("x/recipe.toml")).unwrap();
    c.link("recipes", &c.host);
    let out = c.validation_output();
    c.assert_nothing_read(&out);
    assert!(out.contains("`recipes` leaves the checkout"), "{out}");
}

#[test]
fn a_step_file_linked_outside_says_the_same_whether_or_not_the_host_file_exists() {
    let c = HostileCheckout::new();
    c.write(
        "recipes/x/recipe.toml",
        &format!("{PLAIN_RECIPE}[[provision]]\ntype = \"ansible\"\nplaybook = \"site.yml\"\n[[provision]]\ntype = \"file\"\nsource = \"files\"\ndestination = \"/etc/app\"\n"),
    );
    c.link("recipes/x/site.yml", &c.host.join("bakery.toml"));
    c.link("recipes/x/files", &c.host.join("no-such-folder"));
    let out = c.validation_output();
    c.assert_nothing_read(&out);
    assert!(
        out.contains("recipes/x/recipe.toml:8:12: `recipes/x/site.yml` leaves the checkout"),
        "{out}"
    );
    assert!(
        out.contains("recipes/x/recipe.toml:11:10: `recipes/x/files` leaves the checkout"),
        "{out}"
    );
    // No oracle: an existing host file and a missing one get the same words.
    assert!(!out.contains("broken symlink"), "{out}");
    assert!(!out.contains("does not exist"), "{out}");
}
