//! Which `extra_args` an ansible step may pass to `ansible-playbook`. bakery runs the
//! playbook on the builder against `localhost` over a local connection; options that
//! would choose another inventory, host, connection or login, wait for a terminal, or
//! skip running the playbook make no sense there and are refused, by name, before
//! anything runs. Pure: no file system, no process.

/// Why an argument is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedArg {
    #[error(
        "`{option}` chooses {what}; bakery runs the playbook on the builder itself, \
         against localhost over a local connection"
    )]
    Target { option: String, what: &'static str },
    #[error("`{option}` waits for an answer on a terminal, and the build has none")]
    Interactive { option: String },
    #[error("`{option}` does not run the playbook")]
    NoRun { option: String },
    #[error("`{option}` is not an ansible-playbook option bakery passes on")]
    Unknown { option: String },
    #[error("`{option}` needs a value after it")]
    MissingValue { option: String },
    #[error("`{arg}` is not an option: ansible-playbook would take it for another playbook")]
    Positional { arg: String },
}

impl RefusedArg {
    /// What to do instead, for a diagnostic's hint.
    pub fn hint(&self) -> &'static str {
        match self {
            RefusedArg::Target { .. } => {
                "remove it: the playbook runs on the builder, where `hosts: all` and `localhost` are the builder"
            }
            RefusedArg::Interactive { .. } => {
                "remove it; give passwords with --vault-password-file pointing at a file beside the playbook"
            }
            RefusedArg::NoRun { .. } => "remove it; `bakery plan` shows what a build does",
            RefusedArg::Unknown { .. } => {
                "use -v, -t/--tags, --skip-tags, -e/--extra-vars, -C/--check, -D/--diff, -b/--become, \
                 --become-user, --become-method, -f/--forks, -M/--module-path, --vault-id, \
                 --vault-password-file, --start-at-task, --force-handlers or --flush-cache"
            }
            RefusedArg::MissingValue { .. } => "put the option's value in the next string",
            RefusedArg::Positional { .. } => {
                "give each playbook its own ansible step; an option's value goes right after it"
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Flag,
    Value,
    Target(&'static str),
    Interactive,
    NoRun,
}

fn long(name: &str) -> Option<Kind> {
    use Kind::*;
    Some(match name {
        "--verbose" | "--check" | "--diff" | "--become" | "--force-handlers" | "--flush-cache" => {
            Flag
        }
        "--extra-vars"
        | "--tags"
        | "--skip-tags"
        | "--forks"
        | "--module-path"
        | "--become-method"
        | "--become-user"
        | "--vault-id"
        | "--vault-password-file"
        | "--vault-pass-file"
        | "--start-at-task"
        | "--become-password-file"
        | "--become-pass-file" => Value,
        "--inventory" | "--inventory-file" => Target("the inventory"),
        "--limit" => Target("the hosts"),
        "--connection" => Target("the connection"),
        "--user"
        | "--private-key"
        | "--key-file"
        | "--connection-password-file"
        | "--conn-pass-file" => Target("the login"),
        "--timeout" | "--ssh-common-args" | "--ssh-extra-args" | "--sftp-extra-args"
        | "--scp-extra-args" => Target("how the connection is made"),
        "--ask-pass"
        | "--ask-become-pass"
        | "--ask-vault-pass"
        | "--ask-vault-password"
        | "--step" => Interactive,
        "--syntax-check" | "--list-hosts" | "--list-tasks" | "--list-tags" | "--version"
        | "--help" => NoRun,
        _ => return None,
    })
}

fn short(c: char) -> Option<Kind> {
    use Kind::*;
    Some(match c {
        'v' | 'C' | 'D' | 'b' => Flag,
        'e' | 't' | 'f' | 'M' => Value,
        'i' => Target("the inventory"),
        'l' => Target("the hosts"),
        'c' => Target("the connection"),
        'u' => Target("the login"),
        'T' => Target("how the connection is made"),
        'k' | 'K' | 'J' => Interactive,
        'h' => NoRun,
        _ => return None,
    })
}

fn refuse(kind: Kind, option: String) -> Option<RefusedArg> {
    match kind {
        Kind::Flag | Kind::Value => None,
        Kind::Target(what) => Some(RefusedArg::Target { option, what }),
        Kind::Interactive => Some(RefusedArg::Interactive { option }),
        Kind::NoRun => Some(RefusedArg::NoRun { option }),
    }
}

/// Checks `args` as ansible-playbook would read them. On a refusal, returns the index of
/// the argument at fault and why.
pub fn check_extra_args<S: AsRef<str>>(args: &[S]) -> Result<(), (usize, RefusedArg)> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        let needs_value = if let Some(body) = arg.strip_prefix("--") {
            if body.is_empty() {
                return Err((i, RefusedArg::Positional { arg: arg.into() }));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, _)) => (n, true),
                None => (arg, false),
            };
            let kind = long(name).ok_or_else(|| {
                (
                    i,
                    RefusedArg::Unknown {
                        option: name.into(),
                    },
                )
            })?;
            if let Some(refused) = refuse(kind, name.into()) {
                return Err((i, refused));
            }
            matches!(kind, Kind::Value) && !inline
        } else if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) {
            let mut needs = false;
            for (at, c) in flags.char_indices() {
                let option = format!("-{c}");
                let kind = short(c).ok_or_else(|| {
                    (
                        i,
                        RefusedArg::Unknown {
                            option: option.clone(),
                        },
                    )
                })?;
                if let Some(refused) = refuse(kind, option) {
                    return Err((i, refused));
                }
                if matches!(kind, Kind::Value) {
                    // The rest of the argument is the value, else the next argument is.
                    needs = flags[at + c.len_utf8()..].is_empty();
                    break;
                }
            }
            needs
        } else {
            return Err((i, RefusedArg::Positional { arg: arg.into() }));
        };
        if needs_value {
            if i + 1 >= args.len() {
                return Err((i, RefusedArg::MissingValue { option: arg.into() }));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> (usize, RefusedArg) {
        check_extra_args(args).expect_err(&format!("{args:?} was accepted"))
    }

    #[test]
    fn ordinary_options_pass() {
        for args in [
            &[][..],
            &["-v"],
            &["-vvv", "--diff"],
            &["--tags", "docker", "--skip-tags=slow"],
            &["-t", "docker", "-e", "x=1", "-ey=2"],
            &["-vC"],
            &["-e", "-c"],
            &["--extra-vars", "@vars.yml", "--become-user", "app"],
            &[
                "--vault-password-file",
                "pw.sh",
                "--start-at-task",
                "Install",
            ],
        ] {
            assert_eq!(check_extra_args(args), Ok(()), "{args:?}");
        }
    }

    #[test]
    fn inventory_connection_and_login_are_refused() {
        let (at, why) = refused(&["-v", "-c", "local"]);
        assert_eq!(at, 1);
        assert!(
            matches!(why, RefusedArg::Target { ref option, what: "the connection" } if option == "-c")
        );
        assert_eq!(
            why.to_string(),
            "`-c` chooses the connection; bakery runs the playbook on the builder itself, against localhost over a local connection"
        );
        for args in [
            &["-clocal"][..],
            &["-vc", "local"],
            &["--connection=local"],
            &["--connection", "ssh"],
            &["-i", "hosts"],
            &["--inventory", "hosts"],
            &["-l", "web"],
            &["-u", "root"],
            &["--private-key", "k"],
            &["--ssh-common-args", "-o ProxyCommand=x"],
        ] {
            assert!(
                matches!(refused(args).1, RefusedArg::Target { .. }),
                "{args:?}"
            );
        }
    }

    #[test]
    fn prompts_listings_unknown_options_and_positionals_are_refused() {
        assert!(matches!(refused(&["-K"]).1, RefusedArg::Interactive { .. }));
        assert!(matches!(
            refused(&["--step"]).1,
            RefusedArg::Interactive { .. }
        ));
        assert!(matches!(
            refused(&["--list-hosts"]).1,
            RefusedArg::NoRun { .. }
        ));
        assert!(matches!(
            refused(&["--frobnicate"]).1,
            RefusedArg::Unknown { .. }
        ));
        assert!(matches!(refused(&["-Z"]).1, RefusedArg::Unknown { .. }));
        assert!(matches!(
            refused(&["other.yml"]).1,
            RefusedArg::Positional { .. }
        ));
        assert!(matches!(
            refused(&["--", "x"]).1,
            RefusedArg::Positional { .. }
        ));
        assert_eq!(refused(&["-v", "--tags"]).0, 1);
        assert!(matches!(
            refused(&["--tags"]).1,
            RefusedArg::MissingValue { .. }
        ));
    }
}
