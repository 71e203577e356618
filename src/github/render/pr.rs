//! Pull-request comments: the sticky plan comment, the fork notice, and the help text.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::{cell, code, short_sha};
use crate::github::webhook::commands::CommandProblem;
use crate::plan::model::{BuildPlan, ConnectVia, ProvisionStep, ShellRun, SourcePlan};

/// Identifies the plan comment, the one bakery edits on every push to the PR.
pub const PLAN_MARKER: &str = "<!-- bakery:plan -->";

/// A validation error to show in the plan comment (and as an annotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanProblem {
    pub path: String,
    pub line: Option<u32>,
    pub message: String,
}

/// The sticky plan comment: for every changed recipe, what a build would do; or the
/// validation errors that stop it.
pub fn plan_comment(head_sha: &str, plans: &[BuildPlan], problems: &[PlanProblem]) -> String {
    let mut out = format!("{PLAN_MARKER}\n");
    if !problems.is_empty() {
        let _ = writeln!(
            out,
            "### :x: bakery found {} problem{} at {}\n",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            code(short_sha(head_sha))
        );
        out.push_str("| File | Line | Problem |\n| --- | --- | --- |\n");
        for p in problems {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                code(&p.path),
                p.line.map(|l| l.to_string()).unwrap_or_default(),
                cell(&p.message)
            );
        }
        out.push('\n');
    }
    if plans.is_empty() && problems.is_empty() {
        let _ = writeln!(
            out,
            "### bakery plan at {}\n\nNo recipe changed in this pull request.",
            code(short_sha(head_sha))
        );
        return out;
    }
    if !plans.is_empty() {
        let _ = writeln!(
            out,
            "### bakery plan at {}: {} recipe{}\n",
            code(short_sha(head_sha)),
            plans.len(),
            if plans.len() == 1 { "" } else { "s" }
        );
    }
    for p in plans {
        plan_section(&mut out, p);
    }
    out.trim_end().to_string() + "\n"
}

fn plan_section(out: &mut String, p: &BuildPlan) {
    let _ = writeln!(
        out,
        "<details><summary><b>{}</b></summary>\n",
        cell(&p.recipe)
    );
    let source = match &p.source {
        SourcePlan::AmiId { id } => code(id),
        SourcePlan::Filter {
            owners,
            name,
            architecture,
            most_recent,
        } => format!(
            "{} owned by {}{}{}",
            code(name),
            owners.join(", "),
            architecture
                .as_deref()
                .map(|a| format!(", {a}"))
                .unwrap_or_default(),
            if *most_recent { ", newest" } else { "" }
        ),
        SourcePlan::Recipe { recipe, version } => {
            format!("recipe {} at {}", cell(recipe), code(version))
        }
    };
    let connect = match &p.builder.connect {
        ConnectVia::PublicIp => "public IP".to_string(),
        ConnectVia::PrivateIp => "private IP".to_string(),
        ConnectVia::Explicit { host, port } => format!("{host}:{port}"),
    };
    let _ = writeln!(out, "- Image: {}", code(&p.image.name));
    let _ = writeln!(out, "- Source: {source}");
    let _ = writeln!(
        out,
        "- Builder: {} in {}, {} GB {}, SSH as {} over {}",
        code(&p.builder.instance_type),
        p.builder.region,
        p.builder.volume_size_gb,
        p.builder.volume_type,
        code(&p.builder.ssh_user),
        connect
    );
    if !p.provision.is_empty() {
        out.push_str("- Provision:\n");
        for (i, step) in p.provision.iter().enumerate() {
            let what = match step {
                ProvisionStep::Shell(s) => match &s.run {
                    ShellRun::Inline { commands } => format!(
                        "shell, {} command{}",
                        commands.len(),
                        if commands.len() == 1 { "" } else { "s" }
                    ),
                    ShellRun::Script { path } => {
                        format!("shell script {}", code(&path.display().to_string()))
                    }
                },
                ProvisionStep::File(f) => format!(
                    "file {} → {}",
                    code(&f.source.display().to_string()),
                    code(&f.destination)
                ),
                ProvisionStep::Ansible(a) => {
                    format!("ansible {}", code(&a.playbook.display().to_string()))
                }
            };
            let _ = writeln!(out, "  {}. {} ({what})", i + 1, cell(step.name()));
        }
    }
    let _ = writeln!(out, "- Release file: {}", code(&p.stamp.path));
    if !p.verify.is_empty() {
        let _ = writeln!(out, "- Verify: {} check(s)", p.verify.len());
    }
    let _ = writeln!(
        out,
        "- Copies ({}):\n",
        if p.distribute.encrypted {
            "encrypted"
        } else {
            "not encrypted"
        }
    );
    out.push_str("  | Account | Region | KMS key |\n  | --- | --- | --- |\n");
    for c in &p.distribute.copies {
        let _ = writeln!(
            out,
            "  | {} | {} | {} |",
            c.account
                .as_ref()
                .map(|a| a.account_id.clone())
                .unwrap_or_else(|| "home".into()),
            cell(&c.region),
            c.kms_key_id
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "default EBS key".into())
        );
    }
    out.push_str("\n</details>\n\n");
}

/// The notice on a pull request from a fork: no build with credentials until a writer
/// asks for one.
pub fn fork_needs_approval(author: &str, head_repo: &str) -> String {
    format!(
        "{}\n### :lock: Build needs approval\n\nThis pull request comes from the fork {}, \
         so bakery validated the recipes but will not build images with this repository's \
         cloud credentials on its own.\n\nA user with write permission on this repository \
         (not @{}) can start a build by commenting:\n\n    /bakery build\n\nThe build runs \
         the fork's code with the repository's credentials: review the changes first. \
         The approval covers the head you reviewed: a push after it needs a new \
         `/bakery build`.\n",
        super::marker("fork-approval"),
        code(head_repo),
        author
    )
}

/// The summary of the `bakery/validate` check run: the recipes affected, every
/// diagnostic in a fenced block (its fence longer than any backtick run inside), and the
/// problems that stopped planning.
pub fn validation_summary(
    touched: &[String],
    diagnostics: &[String],
    plan_errors: &[PlanProblem],
) -> String {
    let mut out = if touched.is_empty() {
        "No recipe is affected.\n".to_string()
    } else {
        format!(
            "Recipes affected: {}.\n",
            touched
                .iter()
                .map(|r| code(r))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !diagnostics.is_empty() {
        out.push('\n');
        out.push_str(&super::code_block("", &diagnostics.join("\n")));
    }
    for p in plan_errors {
        let _ = write!(out, "\n{}: {}\n", code(&p.path), super::inert(&p.message));
    }
    out
}

/// A writer's `/bakery build` arrived, but the pull request's head is not the one bakery
/// last validated before the comment (a push since, or none validated yet): nothing is
/// built, and the writer is told what a new approval needs.
pub fn approval_outdated(writer: &str, approved: Option<&str>, head: &str) -> String {
    let why = match approved {
        Some(sha) => format!(
            "the pull request was pushed to after bakery validated {}: its head is now {}",
            code(short_sha(sha)),
            code(short_sha(head))
        ),
        None => format!(
            "bakery has not validated the pull request's head {} yet",
            code(short_sha(head))
        ),
    };
    format!(
        "@{}, bakery did not build: {why}. A build runs the pull request's code with this \
         repository's credentials, so it only builds a head that was validated before the \
         approval. Wait for the check `bakery/validate` on {}, review the new commits, then \
         comment `/bakery build` again.\n",
        neutralize_login(writer),
        code(short_sha(head))
    )
}

/// A GitHub login as text bakery writes: logins are `[A-Za-z0-9-]` (plus `[bot]`); anything
/// else is dropped so a crafted value cannot smuggle Markdown or further mentions.
pub(super) fn neutralize_login(login: &str) -> String {
    login
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '[' | ']'))
        .collect()
}

/// The help text, with what was wrong first when a command was not understood.
pub fn help_text(problem: Option<&CommandProblem>) -> String {
    let mut out = String::new();
    if let Some(p) = problem {
        let p = match p {
            CommandProblem::NoCommand => format!("{} needs a command", code("/bakery")),
            CommandProblem::NotARecipeName { word } => format!(
                "{} is not a recipe name (letters, digits, `-` and `_`)",
                code(word)
            ),
            CommandProblem::TooManyRecipes => {
                format!("{} takes at most one recipe name", code("/bakery build"))
            }
            CommandProblem::TakesNoArguments { verb } => {
                format!("{} takes no arguments", code(&format!("/bakery {verb}")))
            }
            CommandProblem::UnknownCommand { word } => {
                format!("{} is not a bakery command", code(word))
            }
        };
        let _ = writeln!(out, ":question: {p}\n");
    }
    out.push_str(
        "bakery understands these commands in a pull request comment, on a line of their own:\n\n\
         | Command | What it does |\n\
         | --- | --- |\n\
         | `/bakery build` | Build every recipe this pull request changes, into throwaway images. Needs write permission. |\n\
         | `/bakery build <recipe>` | Build one recipe. |\n\
         | `/bakery validate` | Check every recipe and `bakery.toml` again, and update the plan comment. |\n\
         | `/bakery cancel` | Stop this pull request's running build; its resources are cleaned up. |\n\
         | `/bakery help` | Show this help. |\n\n\
         Commands in code blocks and quotes are ignored.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::model::*;

    fn plan() -> BuildPlan {
        BuildPlan {
            repo: None,
            recipe: "web".into(),
            version: "pr-12-3f2a9c1".into(),
            git_sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c".into(),
            build_time: "2025-01-02T03:04:05Z".into(),
            source: SourcePlan::Filter {
                owners: vec!["099720109477".into()],
                name: "ubuntu/images/*-24.04-amd64-server-*".into(),
                architecture: Some("x86_64".into()),
                most_recent: true,
            },
            builder: BuilderPlan {
                region: "eu-west-1".into(),
                instance_type: "t3.small".into(),
                subnet_id: None,
                volume_size_gb: 16,
                volume_type: "gp3".into(),
                ssh_user: "ubuntu".into(),
                connect: ConnectVia::PublicIp,
                ssh_cidr: "203.0.113.7/32".into(),
                imdsv2_required: true,
                kms_key: None,
            },
            provision: vec![
                ProvisionStep::Shell(ShellStep {
                    name: "install packages".into(),
                    run: ShellRun::Inline {
                        commands: vec!["apt-get update".into(), "apt-get install -y nginx".into()],
                    },
                    env: BTreeMap::new(),
                    sudo: true,
                    expect_disconnect: false,
                    timeout_secs: 600,
                }),
                ProvisionStep::File(FileStep {
                    name: "site config".into(),
                    source: "recipes/web/files/site.conf".into(),
                    destination: "/etc/nginx/sites-enabled/site.conf".into(),
                    mode: Some(0o644),
                    owner: None,
                }),
            ],
            stamp: StampPlan {
                path: "/etc/release".into(),
                extra: BTreeMap::new(),
            },
            verify: vec![],
            seal: SealPlan::default(),
            image: ImagePlan {
                name: "web-pr-12-3f2a9c1".into(),
                description: "web".into(),
                tags: BTreeMap::new(),
                snapshot_tags: BTreeMap::new(),
                ephemeral: true,
            },
            distribute: DistributePlan {
                encrypted: true,
                copies: vec![
                    CopyPlan {
                        account: None,
                        region: "eu-west-1".into(),
                        kms_key_id: Some("alias/ami".into()),
                    },
                    CopyPlan {
                        account: Some(AccountTarget {
                            account_id: "222222222222".into(),
                            role_arn: "arn:aws:iam::222222222222:role/bakery".into(),
                            external_id: None,
                        }),
                        region: "us-east-1".into(),
                        kms_key_id: None,
                    },
                ],
                launch_permissions: LaunchPermissions::default(),
                deprecate_after_secs: None,
            },
        }
    }

    #[test]
    fn plan_comment_snapshot() {
        let c = plan_comment("3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c", &[plan()], &[]);
        assert!(c.starts_with(PLAN_MARKER));
        assert!(!c.contains("role/bakery"), "role ARNs stay out of comments");
        insta::assert_snapshot!(c);
    }

    #[test]
    fn plan_comment_with_problems_snapshot() {
        let c = plan_comment(
            "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c",
            &[],
            &[PlanProblem {
                path: "recipes/web/recipe.toml".into(),
                line: Some(7),
                message: "unknown key `instance_typ` (did you mean `instance_type`?)".into(),
            }],
        );
        assert!(c.starts_with(PLAN_MARKER));
        insta::assert_snapshot!(c);
    }

    #[test]
    fn validation_summary_fences_and_quotes_untrusted_text() {
        let s = validation_summary(
            &["base".into()],
            &["recipes/base/recipe.toml:1:1: error: ```\n@acme/security-team".into()],
            &[PlanProblem {
                path: "recipes/base/recipe.toml".into(),
                line: None,
                message: "cc @acme/security-team".into(),
            }],
        );
        assert!(s.contains("````\n"), "{s}");
        assert!(!s.contains("cc @acme"), "{s}");
        insta::assert_snapshot!(s);
    }

    #[test]
    fn approval_outdated_snapshots() {
        let head = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";
        insta::assert_snapshot!(
            "approval_outdated",
            approval_outdated(
                "octocat",
                Some("3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c"),
                head
            )
        );
        let none = approval_outdated("octo cat**@evil", None, head);
        assert!(
            none.starts_with("@octocatevil, bakery did not build: bakery has not validated"),
            "{none}"
        );
    }

    #[test]
    fn fork_notice_and_help_snapshots() {
        insta::assert_snapshot!("fork", fork_needs_approval("mallory", "mallory/images"));
        let help = help_text(Some(&CommandProblem::UnknownCommand {
            word: "deploy".into(),
        }));
        assert!(help.starts_with(":question: `deploy`"));
        insta::assert_snapshot!("help", help);
    }

    #[test]
    fn help_text_lists_every_command_the_parser_knows() {
        use crate::github::webhook::commands::{parse_command, Command};
        let help = help_text(None);
        for line in help.lines().filter(|l| l.starts_with("| `/bakery")) {
            let cmd = line.split('`').nth(1).unwrap().replace("<recipe>", "base");
            let parsed = parse_command(&cmd);
            assert!(
                !matches!(parsed, Some(Command::Help { problem: Some(_) }) | None),
                "help lists {cmd:?} which the parser rejects: {parsed:?}"
            );
        }
    }
}
