//! Quoting for the POSIX shell on the builder.

/// Quotes `s` as one word for `sh`: wrapped in single quotes, with embedded single quotes
/// closed, escaped and reopened. Plain words made only of safe characters are left as they are.
pub fn sh_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if safe {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `export K='v'; ` lines for a command's environment. Names must be valid shell
/// identifiers: anything else is rejected rather than quoted into a surprise.
pub fn env_exports<'a>(
    env: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    for (k, v) in env {
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            anyhow::bail!(
                "environment variable name {k:?} is not a valid shell identifier; use letters, digits and _"
            );
        }
        out.push_str(&format!("export {k}={}; ", sh_quote(v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(sh_quote("/etc/release"), "/etc/release");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn quoted_words_round_trip_through_sh() {
        for s in ["it's", "a\nb", "$HOME `x` \\ \"q\"", "*"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn exports_reject_bad_names() {
        let mut env = std::collections::BTreeMap::new();
        env.insert("GREETING".to_string(), "hi there".to_string());
        assert_eq!(env_exports(&env).unwrap(), "export GREETING='hi there'; ");
        env.insert("BAD-NAME".to_string(), "x".to_string());
        assert!(env_exports(&env).is_err());
    }
}
