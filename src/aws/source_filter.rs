//! A recipe's source given as a filter (owners, a name pattern, an architecture): which
//! images of a DescribeImages answer it matches, and which one the builder boots.
//!
//! In the builder region the filter is asked in the same DescribeImages as the release
//! lookup's name check ([`super::release::lookup`]): owners are the source's owners and
//! `self`, names the image's name and the source's pattern, with no state or architecture
//! filter (a name is held by an image in any state). That answer holds more than the
//! source's own request would, so [`is_candidate`] applies here what EC2 would have
//! filtered: the state, the architecture, the name pattern, and an image of this account
//! only when the source's owners name it. Alone (`bakery doctor`, a builder region that
//! is not a target) the source is asked with its own filters, and [`choose`] picks among
//! that answer the same way.
//!
//! Pure: no AWS call.

use aws_sdk_ec2::types::{Image, ImageState};

use super::session::Target;

/// Whether `name` matches an EC2 filter value: `*` is any run of characters, `?` any one
/// character, and a backslash makes the next character literal.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('\\') if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                pi += 2;
                ni += 1;
                continue;
            }
            Some(c) if *c != '\\' && *c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether an image of the combined answer is one the source's own request would have
/// returned: available, of the architecture, named by the pattern, and owned by one of
/// the owners (EC2 filtered the owners, but `self` was added for the name check: this
/// account's images count only when the source names it).
pub fn is_candidate(
    image: &Image,
    owners: &[String],
    pattern: &str,
    architecture: Option<&str>,
    account: &str,
) -> bool {
    let own = image.owner_id() == Some(account);
    let owner_named = owners.iter().any(|o| o == "self" || o == account);
    image.state() == Some(&ImageState::Available)
        && architecture.is_none_or(|a| image.architecture().map(|x| x.as_str()) == Some(a))
        && image.name().is_some_and(|n| glob_matches(pattern, n))
        && (!own || owner_named)
}

/// The source among the filter's images: the only one, or the newest with `most_recent`.
pub fn choose(
    mut images: Vec<Image>,
    builder: &Target,
    owners: &[String],
    pattern: &str,
    most_recent: bool,
) -> anyhow::Result<Image> {
    anyhow::ensure!(
        !images.is_empty(),
        "no source image named {pattern:?} owned by {} in {builder}: check the filter in the recipe's source",
        owners.join(", ")
    );
    if !most_recent && images.len() > 1 {
        let ids: Vec<_> = images.iter().filter_map(|i| i.image_id()).collect();
        anyhow::bail!(
            "{} source images match {pattern:?} in {builder} ({}): narrow the filter or set most_recent = true",
            images.len(),
            ids.join(", ")
        );
    }
    images.sort_by(|a, b| a.creation_date().cmp(&b.creation_date()));
    Ok(images.pop().expect("not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::ArchitectureValues;

    #[test]
    fn ec2_wildcards() {
        assert!(glob_matches(
            "amzn2-ami-hvm-*-x86_64-gp2",
            "amzn2-ami-hvm-2.0.20180810-x86_64-gp2"
        ));
        assert!(!glob_matches(
            "amzn2-ami-hvm-*-x86_64-gp2",
            "amzn2-ami-hvm-2.0.20180810-arm64-gp2"
        ));
        assert!(glob_matches("base-?.0", "base-1.0"));
        assert!(!glob_matches("base-?.0", "base-10.0"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches(r"star\*", "star*"));
        assert!(!glob_matches(r"star\*", "starry"));
    }

    fn image(owner: &str, name: &str, state: ImageState, arch: ArchitectureValues) -> Image {
        Image::builder()
            .image_id(format!("ami-{name}"))
            .owner_id(owner)
            .name(name)
            .state(state)
            .architecture(arch)
            .build()
    }

    #[test]
    fn the_combined_answer_keeps_only_what_the_source_request_would_return() {
        let amazon = vec!["amazon".to_string()];
        let x86 = Some("x86_64");
        let pattern = "amzn2-*";
        let ok = image(
            "137112412989",
            "amzn2-a",
            ImageState::Available,
            ArchitectureValues::X8664,
        );
        assert!(is_candidate(&ok, &amazon, pattern, x86, "123456789012"));
        let pending = image(
            "137112412989",
            "amzn2-b",
            ImageState::Pending,
            ArchitectureValues::X8664,
        );
        assert!(!is_candidate(
            &pending,
            &amazon,
            pattern,
            x86,
            "123456789012"
        ));
        let arm = image(
            "137112412989",
            "amzn2-c",
            ImageState::Available,
            ArchitectureValues::Arm64,
        );
        assert!(!is_candidate(&arm, &amazon, pattern, x86, "123456789012"));
        assert!(is_candidate(&arm, &amazon, pattern, None, "123456789012"));
        // The image's own name, asked for the name check, is not the source.
        let released = image(
            "123456789012",
            "base-1.0.0",
            ImageState::Available,
            ArchitectureValues::X8664,
        );
        assert!(!is_candidate(
            &released,
            &amazon,
            pattern,
            x86,
            "123456789012"
        ));
        // This account's image matching the pattern: only when the source names the account.
        let own = image(
            "123456789012",
            "amzn2-own",
            ImageState::Available,
            ArchitectureValues::X8664,
        );
        assert!(!is_candidate(&own, &amazon, pattern, x86, "123456789012"));
        let with_self = vec!["amazon".to_string(), "self".to_string()];
        assert!(is_candidate(&own, &with_self, pattern, x86, "123456789012"));
        let by_id = vec!["123456789012".to_string()];
        assert!(is_candidate(&own, &by_id, pattern, x86, "123456789012"));
    }

    #[test]
    fn choose_takes_the_newest_only_with_most_recent() {
        let t = Target {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let at = |id: &str, date: &str| Image::builder().image_id(id).creation_date(date).build();
        let two = vec![
            at("ami-new", "2026-02-01T00:00:00.000Z"),
            at("ami-old", "2026-01-01T00:00:00.000Z"),
        ];
        let owners = vec!["amazon".to_string()];
        let picked = choose(two.clone(), &t, &owners, "x-*", true).unwrap();
        assert_eq!(picked.image_id(), Some("ami-new"));
        let err = choose(two, &t, &owners, "x-*", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 source images match"), "{err}");
        let err = choose(vec![], &t, &owners, "x-*", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no source image named"), "{err}");
    }
}
