//! Comment commands on pull requests: `/bakery build [recipe]`, `/bakery validate`,
//! `/bakery cancel`, `/bakery help`.
//!
//! A command is a line of its own that starts with `/bakery`. Lines inside fenced or
//! indented code blocks and `>` quotes are not commands: quoting someone's command must
//! not run it again. An unknown or malformed command asks for the help text.

use serde::{Deserialize, Serialize};

/// What a comment asks bakery to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Build every changed recipe, or the one named.
    Build {
        recipe: Option<String>,
    },
    Validate,
    Cancel,
    /// `/bakery help`, or a command bakery did not understand (`problem` says what).
    Help {
        problem: Option<CommandProblem>,
    },
}

/// What was wrong with a command bakery did not understand. The words are the
/// commenter's own: `render::help_text` quotes them so they cannot mention anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum CommandProblem {
    /// `/bakery` alone.
    NoCommand,
    /// `/bakery build WORD` where WORD cannot be a recipe name.
    NotARecipeName { word: String },
    /// `/bakery build a b`.
    TooManyRecipes,
    /// `/bakery validate x` and the like.
    TakesNoArguments { verb: String },
    /// `/bakery WORD` for a WORD bakery does not know.
    UnknownCommand { word: String },
}

const PREFIX: &str = "/bakery";

/// The first command in a comment body, if any. The caller drops bakery's own comments
/// first (see [`crate::github::api::client::is_own_comment`]).
pub fn parse_command(body: &str) -> Option<Command> {
    command_lines(body).into_iter().next().map(parse_line)
}

/// The lines of `body` that hold a command, in order, outside code and quotes.
fn command_lines(body: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    let mut previous_blank = true;
    for raw in body.lines() {
        let line = raw.trim_end_matches('\r');
        let indent = leading_indent(line);
        let trimmed = line.trim_start();
        if let Some((ch, len)) = fence {
            if indent < 4 && closes_fence(trimmed, ch, len) {
                fence = None;
            }
            previous_blank = false;
            continue;
        }
        if indent < 4 {
            if let Some(open) = opens_fence(trimmed) {
                fence = Some(open);
                previous_blank = false;
                continue;
            }
        }
        let blank = trimmed.is_empty();
        // An indented code block starts after a blank line (or at the top); a deeper
        // indent that continues a paragraph is not code.
        let indented_code = indent >= 4 && previous_blank;
        if indented_code {
            // Stays "after a blank line" so the block's next lines are code too.
            continue;
        }
        previous_blank = blank;
        if trimmed.starts_with('>') {
            continue;
        }
        if is_command(trimmed) {
            found.push(trimmed);
        }
    }
    found
}

/// Columns of leading whitespace, a tab counting as four.
fn leading_indent(line: &str) -> usize {
    let mut n = 0;
    for c in line.chars() {
        match c {
            ' ' => n += 1,
            '\t' => n += 4 - n % 4,
            _ => break,
        }
    }
    n
}

fn opens_fence(trimmed: &str) -> Option<(char, usize)> {
    let ch = trimmed.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = trimmed.chars().take_while(|&c| c == ch).count();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string may not hold backticks.
    if ch == '`' && trimmed[len..].contains('`') {
        return None;
    }
    Some((ch, len))
}

fn closes_fence(trimmed: &str, ch: char, len: usize) -> bool {
    let n = trimmed.chars().take_while(|&c| c == ch).count();
    n >= len && trimmed[n * ch.len_utf8()..].trim().is_empty()
}

fn is_command(trimmed: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_case(trimmed, PREFIX) else {
        return false;
    };
    rest.is_empty() || rest.starts_with(char::is_whitespace)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_line(line: &str) -> Command {
    let rest = strip_prefix_ignore_case(line, PREFIX).unwrap_or("");
    let mut words = rest.split_whitespace();
    let verb = words.next().map(str::to_ascii_lowercase);
    let args: Vec<&str> = words.collect();
    let help = |problem: CommandProblem| Command::Help {
        problem: Some(problem),
    };
    match verb.as_deref() {
        None => help(CommandProblem::NoCommand),
        Some("build") => match args.as_slice() {
            [] => Command::Build { recipe: None },
            [recipe] if is_recipe_name(recipe) => Command::Build {
                recipe: Some(recipe.to_string()),
            },
            [recipe] => help(CommandProblem::NotARecipeName {
                word: recipe.to_string(),
            }),
            _ => help(CommandProblem::TooManyRecipes),
        },
        Some(v @ ("validate" | "cancel" | "help")) if !args.is_empty() => {
            help(CommandProblem::TakesNoArguments {
                verb: v.to_string(),
            })
        }
        Some("validate") => Command::Validate,
        Some("cancel") => Command::Cancel,
        Some("help") => Command::Help { problem: None },
        Some(other) => help(CommandProblem::UnknownCommand {
            word: other.to_string(),
        }),
    }
}

fn is_recipe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(recipe: Option<&str>) -> Command {
        Command::Build {
            recipe: recipe.map(str::to_string),
        }
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse_command("/bakery build"), Some(build(None)));
        assert_eq!(
            parse_command("/bakery build base"),
            Some(build(Some("base")))
        );
        assert_eq!(
            parse_command("  /bakery   BUILD web_2  "),
            Some(build(Some("web_2")))
        );
        assert_eq!(parse_command("/bakery validate"), Some(Command::Validate));
        assert_eq!(parse_command("/bakery cancel\r\n"), Some(Command::Cancel));
        assert_eq!(
            parse_command("/bakery help"),
            Some(Command::Help { problem: None })
        );
    }

    #[test]
    fn finds_the_command_among_prose() {
        let body = "Looks good to me.\n\n/bakery build web\n\nThanks!";
        assert_eq!(parse_command(body), Some(build(Some("web"))));
    }

    #[test]
    fn ignores_text_that_only_mentions_bakery() {
        assert_eq!(parse_command("please run /bakery build"), None);
        assert_eq!(parse_command("/bakeryfoo build"), None);
        assert_eq!(parse_command("no command here"), None);
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn unknown_and_malformed_commands_ask_for_help() {
        let problem = |body: &str| match parse_command(body) {
            Some(Command::Help { problem: Some(p) }) => p,
            other => panic!("expected help with a problem for {body:?}, got {other:?}"),
        };
        assert_eq!(
            problem("/bakery deploy"),
            CommandProblem::UnknownCommand {
                word: "deploy".into()
            }
        );
        assert_eq!(problem("/bakery"), CommandProblem::NoCommand);
        assert_eq!(problem("/bakery build a b"), CommandProblem::TooManyRecipes);
        assert_eq!(
            problem("/bakery build ../etc"),
            CommandProblem::NotARecipeName {
                word: "../etc".into()
            }
        );
        assert_eq!(
            problem("/bakery cancel now"),
            CommandProblem::TakesNoArguments {
                verb: "cancel".into()
            }
        );
    }

    #[test]
    fn ignores_commands_in_fenced_code() {
        let body = "Run this:\n```\n/bakery build\n```\n";
        assert_eq!(parse_command(body), None);
        let tilde = "~~~~sh\n/bakery cancel\n~~~\n/bakery build\n~~~~\n";
        assert_eq!(parse_command(tilde), None, "a shorter fence does not close");
        let after = "```\n/bakery build\n```\n/bakery validate";
        assert_eq!(parse_command(after), Some(Command::Validate));
    }

    #[test]
    fn ignores_commands_in_indented_code() {
        assert_eq!(parse_command("Example:\n\n    /bakery build\n"), None);
        assert_eq!(parse_command("\t/bakery build"), None);
        let after = "Example:\n\n    /bakery build\n\n/bakery help";
        assert_eq!(parse_command(after), Some(Command::Help { problem: None }));
    }

    #[test]
    fn ignores_commands_in_quotes() {
        assert_eq!(parse_command("> /bakery build"), None);
        assert_eq!(parse_command(">/bakery build\n> > /bakery cancel"), None);
        let reply = "> /bakery build\n\nNo, validate first:\n/bakery validate";
        assert_eq!(parse_command(reply), Some(Command::Validate));
    }
}
