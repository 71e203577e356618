//! Replies to comment commands on a pull request: why a validation build did not run, a
//! pull request with nothing to build, and what `/bakery cancel` stopped. Pure text from
//! small typed inputs; the handlers in `jobs/` decide, this file words.

use std::fmt::{self, Write};

use super::pr::neutralize_login;
use super::{code, inert, short_sha};

/// Why a pull request's validation gets no build. The handler decides it from the
/// repository's `pull_requests` mode, the command and the recipes; the text is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoBuild {
    /// A `/bakery validate`: validation only.
    ValidationOnly,
    /// The base branch's `bakery.toml` sets `pull_requests = "never"`.
    ModeNever { base_ref: String },
    /// The base branch's `bakery.toml` sets `pull_requests = "on-command"`.
    ModeOnCommand { base_ref: String },
    /// `pull_requests = "always"`, but the pull request comes from a fork.
    Fork,
    /// A writer's `/bakery build` on a repository whose mode is `never`.
    CommandButNever { base_ref: String },
    /// `/bakery build <recipe>` names no recipe at the head.
    NoSuchRecipe {
        recipe: String,
        head_sha: String,
        recipes: Vec<String>,
    },
    /// `/bakery build` on a pull request that changes no recipe.
    ChangesNoRecipe,
    /// No recipe changed (the mode would build, there is nothing to).
    NoRecipeChanged,
    /// The recipes do not validate; `recipes` would have been built.
    Invalid { recipes: Vec<String>, check: String },
}

/// The reason in one line, as the job log, the job's result and the reply say it.
impl fmt::Display for NoBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoBuild::ValidationOnly => write!(f, "a validation only"),
            NoBuild::ModeNever { base_ref } => {
                write!(
                    f,
                    "bakery.toml on {base_ref} sets pull_requests = \"never\""
                )
            }
            NoBuild::ModeOnCommand { base_ref } => write!(
                f,
                "bakery.toml on {base_ref} sets pull_requests = \"on-command\": a writer \
                 comments `/bakery build`"
            ),
            NoBuild::Fork => write!(
                f,
                "the pull request comes from a fork: a writer comments `/bakery build`"
            ),
            NoBuild::CommandButNever { base_ref } => write!(
                f,
                "this repository's bakery.toml on {base_ref} sets `pull_requests = \"never\"`: \
                 pull requests are validated, never built"
            ),
            NoBuild::NoSuchRecipe {
                recipe,
                head_sha,
                recipes,
            } => write!(
                f,
                "there is no recipe `{recipe}` at {} (recipes: {})",
                short_sha(head_sha),
                recipes.join(", ")
            ),
            NoBuild::ChangesNoRecipe => write!(f, "this pull request changes no recipe"),
            NoBuild::NoRecipeChanged => write!(f, "no recipe changed"),
            NoBuild::Invalid { recipes, check } => write!(
                f,
                "the recipes do not validate ({} to build): see the check run {check}",
                recipes.join(", ")
            ),
        }
    }
}

/// The answer to a writer's `/bakery build` that built nothing.
pub fn did_not_build(by: &str, why: &NoBuild) -> String {
    format!(
        "@{}, bakery did not build: {}.\n",
        neutralize_login(by),
        inert(&why.to_string())
    )
}

/// The answer to `/bakery build` on a pull request that changes no recipe and not
/// `bakery.toml`.
pub fn nothing_to_build() -> String {
    "bakery has nothing to build: this pull request changes no recipe and not `bakery.toml`.\n"
        .into()
}

/// What a job `/bakery cancel` asked to stop was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelledWork {
    /// A validation of this head.
    Validation { sha: String },
    /// A comment command; `line` is its `/bakery` line, when the comment has one.
    Command { line: Option<String> },
    /// A release of this tag.
    Release { git_ref: String },
}

/// A job `/bakery cancel` asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledJob {
    pub id: i64,
    /// The job's state when it was asked to stop (`queued`, `running`).
    pub state: String,
    pub work: CancelledWork,
}

/// The answer to `/bakery cancel`: the jobs asked to stop, or that there was none.
pub fn cancel_reply(author: &str, jobs: &[CancelledJob]) -> String {
    let author = neutralize_login(author);
    let mut body = String::new();
    if jobs.is_empty() {
        let _ = writeln!(
            body,
            "@{author}, bakery has nothing to cancel: no job of this pull request is queued or running."
        );
        return body;
    }
    let _ = writeln!(
        body,
        "@{author}, bakery is stopping {} job{} of this pull request; a build's resources are \
         cleaned up as it stops:\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" }
    );
    for j in jobs {
        let what = match &j.work {
            CancelledWork::Validation { sha } => format!("validation of {}", code(short_sha(sha))),
            CancelledWork::Command { line: Some(line) } => code(&line.replace('`', "'")),
            CancelledWork::Command { line: None } => code("a command"),
            CancelledWork::Release { git_ref } => format!("release {}", inert(git_ref)),
        };
        let _ = writeln!(body, "- job {} ({}, {what})", j.id, j.state);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_not_build_snapshots() {
        let mut all = String::new();
        for why in [
            NoBuild::ValidationOnly,
            NoBuild::ModeNever {
                base_ref: "main".into(),
            },
            NoBuild::ModeOnCommand {
                base_ref: "main".into(),
            },
            NoBuild::Fork,
            NoBuild::CommandButNever {
                base_ref: "main".into(),
            },
            NoBuild::NoSuchRecipe {
                recipe: "webb".into(),
                head_sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c".into(),
                recipes: vec!["base".into(), "web".into()],
            },
            NoBuild::ChangesNoRecipe,
            NoBuild::NoRecipeChanged,
            NoBuild::Invalid {
                recipes: vec!["web".into()],
                check: "bakery/validate".into(),
            },
        ] {
            all.push_str(&did_not_build("octocat", &why));
        }
        insta::assert_snapshot!(all);
    }

    #[test]
    fn did_not_build_neutralizes_the_login_and_the_reason() {
        let reply = did_not_build(
            "octo cat**@evil",
            &NoBuild::ModeNever {
                base_ref: "cc @acme/security-team".into(),
            },
        );
        assert!(
            reply.starts_with("@octocatevil, bakery did not build"),
            "{reply}"
        );
        assert!(!reply.contains("@acme"), "{reply}");
    }

    #[test]
    fn nothing_to_build_snapshot() {
        insta::assert_snapshot!(nothing_to_build());
    }

    #[test]
    fn cancel_reply_snapshots() {
        insta::assert_snapshot!("cancel_nothing", cancel_reply("octocat", &[]));
        insta::assert_snapshot!(
            "cancel_jobs",
            cancel_reply(
                "octocat",
                &[
                    CancelledJob {
                        id: 7,
                        state: "running".into(),
                        work: CancelledWork::Validation {
                            sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c".into(),
                        },
                    },
                    CancelledJob {
                        id: 8,
                        state: "queued".into(),
                        work: CancelledWork::Command {
                            line: Some("/bakery build `web`".into()),
                        },
                    },
                    CancelledJob {
                        id: 9,
                        state: "queued".into(),
                        work: CancelledWork::Command { line: None },
                    },
                ],
            )
        );
        assert!(cancel_reply(
            "a",
            &[CancelledJob {
                id: 1,
                state: "queued".into(),
                work: CancelledWork::Release {
                    git_ref: "v1".into()
                },
            }]
        )
        .contains("stopping 1 job of"));
    }
}
