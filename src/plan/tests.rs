//! The pure planner, on recipes held in memory.

use chrono::TimeZone;

use super::model::*;
use super::render::render_text;
use super::*;
use crate::recipe::{check_sources, Checked, RecipeSource};

const CONFIG: &str = r#"
pull_requests = "always"

[defaults]
region = "eu-west-1"
regions = ["eu-west-1", "us-east-1"]
kms_key = "alias/ami"
kms_keys = { us-east-1 = "alias/ami-us" }
account_role = "bakery-copy"
tags = { ManagedBy = "bakery", Team = "default-team" }
"#;

const BASE: &str = r#"
[source]
owners = ["099720109477"]
name = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{{ var.arch }}-server-*"
architecture = "x86_64"

[builder]
ssh_user = "ubuntu"

[variables]
arch = "amd64"
"#;

const APP: &str = r#"
description = "An application image"

[source]
recipe = "base"
version = "{{ var.base_version }}"

[builder]
region = "eu-west-1"
instance_type = "{{ var.size }}"
subnet_id = "subnet-0123abcd"
volume_size_gb = 40
volume_type = "io2"
ssh_user = "admin"
connect = { host = "10.1.2.3", port = 2222 }
ssh_cidr = "10.0.0.0/8"
imdsv2_required = false

[variables]
base_version = "latest"
size = { type = "string", default = "m7i.large", description = "Builder size" }
packages = ["nginx", "curl"]
workers = { type = "number", default = 4 }
debug = false
team = { type = "string" }

[[provision]]
type = "shell"
name = "Install {{ var.packages }}"
inline = ["apt-get install -y {{ var.packages }}", "echo workers={{ var.workers }} debug={{ var.debug }}"]
env = { DEBIAN_FRONTEND = "noninteractive", RECIPE = "{{ recipe }}" }
sudo = true
timeout = "45m"

[[provision]]
type = "shell"
script = "scripts/reboot.sh"
expect_disconnect = true

[[provision]]
type = "file"
source = "files/app.conf"
destination = "/etc/app/{{ recipe }}.conf"
mode = "0640"
owner = "app:app"

[[provision]]
type = "ansible"
playbook = "../shared/site.yml"
extra_vars = { team = "{{ var.team }}", version = "{{ version }}" }
extra_args = ["--tags", "app"]
become = true

[stamp]
path = "/etc/app-release"
extra = { TEAM = "{{ var.team }}", BUILT = "{{ build_time }}" }

[[verify]]
type = "command"
name = "nginx runs"
command = "systemctl is-active nginx"
expect_stdout = "active"

[[verify]]
type = "command"
command = "test -x /usr/sbin/nginx"
expect_exit = 0
sudo = true

[[verify]]
type = "file"
path = "/etc/app/{{ recipe }}.conf"
expect_content = "team={{ var.team }}"

[seal]
shell_history = false

[image]
name = "{{ recipe }}-{{ version }}"
description = "App {{ version }} from {{ git_sha }}"
tags = { Team = "{{ var.team }}", Built = "{{ build_time }}" }
snapshot_tags = { Backup = "daily" }

[distribute]
regions = ["eu-west-1", "eu-central-1"]
kms_keys = { eu-central-1 = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
deprecate_after = "90d"

[[distribute.accounts]]
account_id = "111111111111"
regions = ["eu-west-1"]

[[distribute.accounts]]
account_id = "222222222222"
role_arn = "arn:aws:iam::222222222222:role/copier"
external_id = "ext-1"
kms_key = "alias/shared"

[distribute.launch_permissions]
account_ids = ["333333333333"]
organization_arns = ["arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"]
"#;

fn checked() -> Checked {
    let c = check_sources(
        Some(CONFIG),
        &[
            RecipeSource::new("base", BASE),
            RecipeSource::new("app", APP),
        ],
    );
    assert!(c.is_ok(), "{}", c.diagnostics);
    c
}

fn input<'a>(recipe: &'a str, vars: &'a VarOverrides) -> PlanInput<'a> {
    PlanInput {
        recipe,
        version: "release-1.2.0",
        git_sha: "0123456789abcdef0123456789abcdef01234567",
        build_time: chrono::Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap(),
        vars,
        ephemeral: false,
    }
}

fn team_vars() -> VarOverrides {
    let mut v = VarOverrides::default();
    v.push_cli(&["team=payments".into()]).unwrap();
    v
}

#[test]
fn full_recipe_plan_snapshot() {
    let vars = team_vars();
    let plan = plan_build(&checked().set, &input("app", &vars)).unwrap();
    insta::assert_json_snapshot!("app_plan", plan);
}

#[test]
fn full_recipe_text_snapshot() {
    let vars = team_vars();
    let plan = plan_build(&checked().set, &input("app", &vars)).unwrap();
    insta::assert_snapshot!("app_plan_text", render_text(&plan));
}

#[test]
fn defaults_are_the_safe_ones() {
    let vars = VarOverrides::default();
    let plan = plan_build(&checked().set, &input("base", &vars)).unwrap();
    insta::assert_json_snapshot!("base_plan", plan);
    assert!(plan.builder.imdsv2_required);
    assert!(plan.distribute.encrypted);
    assert_eq!(plan.builder.region, "eu-west-1", "from bakery.toml");
    assert_eq!(plan.builder.instance_type, defaults::INSTANCE_TYPE);
    assert_eq!(plan.builder.volume_type, "gp3");
    assert_eq!(plan.builder.volume_size_gb, 16);
    assert_eq!(plan.builder.ssh_cidr, "0.0.0.0/0");
    assert_eq!(plan.builder.connect, ConnectVia::PublicIp);
    assert_eq!(plan.stamp.path, "/etc/release");
    assert_eq!(plan.seal, SealPlan::default());
    assert_eq!(plan.image.name, "base-release-1.2.0");
    assert_eq!(
        plan.image.description,
        "base release-1.2.0 built by bakery from 0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        plan.distribute.copies,
        vec![
            CopyPlan {
                account: None,
                region: "eu-west-1".into(),
                kms_key_id: Some("alias/ami".into())
            },
            CopyPlan {
                account: None,
                region: "us-east-1".into(),
                kms_key_id: Some("alias/ami-us".into())
            },
        ],
        "home account copies in bakery.toml's regions with its keys"
    );
    match &plan.source {
        SourcePlan::Filter {
            name, most_recent, ..
        } => {
            assert_eq!(
                name,
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
            );
            assert!(most_recent);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn copies_cover_every_account_region_and_key() {
    let vars = team_vars();
    let plan = plan_build(&checked().set, &input("app", &vars)).unwrap();
    let rows: Vec<(Option<&str>, &str, Option<&str>)> = plan
        .distribute
        .copies
        .iter()
        .map(|c| {
            (
                c.account.as_ref().map(|a| a.account_id.as_str()),
                c.region.as_str(),
                c.kms_key_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (None, "eu-west-1", Some("alias/ami")),
            (
                None,
                "eu-central-1",
                Some("arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
            ),
            (Some("111111111111"), "eu-west-1", Some("alias/ami")),
            // An account without regions gets the home account's.
            (Some("222222222222"), "eu-west-1", Some("alias/shared")),
            (Some("222222222222"), "eu-central-1", Some("alias/shared")),
        ]
    );
    let first = plan.distribute.copies[2].account.as_ref().unwrap();
    assert_eq!(
        first.role_arn, "arn:aws:iam::111111111111:role/bakery-copy",
        "from account_role"
    );
    let second = plan.distribute.copies[3].account.as_ref().unwrap();
    assert_eq!(second.role_arn, "arn:aws:iam::222222222222:role/copier");
    assert_eq!(second.external_id.as_deref(), Some("ext-1"));
}

#[test]
fn ephemeral_builds_stay_in_the_builder_region() {
    let vars = team_vars();
    let mut i = input("app", &vars);
    i.ephemeral = true;
    let plan = plan_build(&checked().set, &i).unwrap();
    assert!(plan.image.ephemeral);
    assert_eq!(
        plan.distribute.copies,
        vec![CopyPlan {
            account: None,
            region: "eu-west-1".into(),
            kms_key_id: Some("alias/ami".into())
        }]
    );
    assert_eq!(
        plan.distribute.launch_permissions,
        LaunchPermissions::default()
    );
    let facts = BuildFacts {
        build_id: "b-1".into(),
        source_ami: "ami-1".into(),
    };
    assert_eq!(plan.image_tags(&facts)[tag_keys::EPHEMERAL], "true");
}

#[test]
fn variables_are_overridden_and_required_ones_named() {
    let mut vars = team_vars();
    vars.push_file("vars.toml", "packages = [\"redis\"]\nworkers = 8\n")
        .unwrap();
    vars.push_cli(&["debug=true".into(), "size=c7i.xlarge".into()])
        .unwrap();
    let plan = plan_build(&checked().set, &input("app", &vars)).unwrap();
    assert_eq!(plan.builder.instance_type, "c7i.xlarge");
    let ProvisionStep::Shell(s) = &plan.provision[0] else {
        panic!()
    };
    assert_eq!(s.name, "Install redis");
    assert_eq!(
        s.run,
        ShellRun::Inline {
            commands: vec![
                "apt-get install -y redis".into(),
                "echo workers=8 debug=true".into()
            ]
        }
    );

    let none = VarOverrides::default();
    let err = plan_build(&checked().set, &input("app", &none))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "recipes/app/recipe.toml:50:24: variable `team` has no value; pass --var team=VALUE or give it a default"
    );

    let mut bad = team_vars();
    bad.push_cli(&["size=huge".into()]).unwrap();
    let err = plan_build(&checked().set, &input("app", &bad))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("recipes/app/recipe.toml:10:17: `huge` is not an EC2 instance type"),
        "{err}"
    );
}

#[test]
fn planning_refuses_unknown_recipes_and_bad_versions() {
    let vars = team_vars();
    let err = plan_build(&checked().set, &input("ap", &vars))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "no recipe named `ap`; did you mean `app`?");
    let err = plan_build(&checked().set, &input("web", &vars))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "no recipe named `web`; the recipes are: app, base");
    let mut i = input("app", &vars);
    i.version = "1.0 beta";
    let err = plan_build(&checked().set, &i).unwrap_err().to_string();
    assert!(err.starts_with("version `1.0 beta` holds ` `"), "{err}");
    i.version = "";
    assert!(plan_build(&checked().set, &i).is_err());
}

#[test]
fn inherited_key_arn_in_another_region_is_refused_when_planning() {
    let config = "[defaults]\nregion = \"eu-west-1\"\nregions = [\"eu-west-1\", \"us-east-1\"]\nkms_key = \"arn:aws:kms:eu-west-1:111111111111:alias/ami\"\n";
    let c = check_sources(Some(config), &[RecipeSource::new("base", BASE)]);
    assert!(c.is_ok(), "{}", c.diagnostics);
    let vars = VarOverrides::default();
    let err = plan_build(&c.set, &input("base", &vars))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KMS key `arn:aws:kms:eu-west-1:111111111111:alias/ami` is in eu-west-1, but this copy goes to us-east-1"),
        "{err}"
    );
}

#[test]
fn release_file_shows_placeholders_in_the_text_plan() {
    let vars = VarOverrides::default();
    let plan = plan_build(&checked().set, &input("base", &vars)).unwrap();
    let text = render_text(&plan);
    assert!(text.contains(
        "Stamp /etc/release\n  | release-1.2.0\n  | RECIPE=base\n  | GIT_SHA=0123456789abcdef0123456789abcdef01234567\n  | BUILD_ID=<build id>\n  | BUILD_TIME=2025-03-01T12:00:00Z\n  | SOURCE_AMI=<resolved at build time>\n"
    ), "{text}");
}

#[test]
fn templated_ansible_args_are_checked_once_rendered() {
    let recipe = format!(
        "{BASE}[variables.mode]\ntype = \"string\"\ndefault = \"-v\"\n\n[[provision]]\ntype = \"ansible\"\nplaybook = \"site.yml\"\nextra_args = [\"{{{{ var.mode }}}}\"]\n"
    );
    let c = check_sources(Some(CONFIG), &[RecipeSource::new("base", &recipe)]);
    assert!(c.is_ok(), "{}", c.diagnostics);
    let vars = VarOverrides::default();
    let plan = plan_build(&c.set, &input("base", &vars)).unwrap();
    assert!(matches!(&plan.provision[0], ProvisionStep::Ansible(a) if a.extra_args == ["-v"]));

    let mut local = VarOverrides::default();
    local.push_cli(&["mode=-clocal".into()]).unwrap();
    let err = plan_build(&c.set, &input("base", &local))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("extra_args: `-c` chooses the connection"),
        "{err}"
    );
    assert!(err.starts_with("recipes/base/recipe.toml:"), "{err}");
}
