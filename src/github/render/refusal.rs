//! Comments and check-run texts that explain why bakery refused, or could not start, to
//! build a tag.

use super::{code, code_block, image_table, short_sha, ImageRow};

/// The check run a release reports under until its recipes are known.
pub const RELEASE_CHECK: &str = "bakery/release";

/// A release tag was moved to another commit after the job for this commit was created
/// and before it ran: this commit is not built (the push of the new commit has its own job).
pub fn tag_moved_before_build(tag: &str, this_commit: &str, now_at: &str) -> String {
    format!(
        "{}\n### :no_entry: bakery did not build {} from {}\n\nThe tag {} was moved to {} \
         before the build of {} started. A version is built from one commit: the push of {} \
         is built (or refused) on its own.\n",
        super::marker("refusal"),
        code(tag),
        code(short_sha(this_commit)),
        code(tag),
        code(short_sha(now_at)),
        code(short_sha(this_commit)),
        code(short_sha(now_at)),
    )
}

/// The recipes at the tagged commit do not validate.
pub fn invalid_recipes(tag: &str, errors: &[String]) -> String {
    format!(
        "{}\n### bakery did not build {}\n\nThe recipes at this commit do not validate:\n\n{}",
        super::marker("invalid-recipes"),
        code(tag),
        code_block("", &errors.join("\n"))
    )
}

/// The title and summary of a failed `bakery/release` check run: the release stopped
/// before its recipes were known (checkout, validation), with the reason.
pub fn release_not_started(tag: &str, reason: &str) -> (String, String) {
    (
        format!("{tag} was not built"),
        format!(
            "bakery stopped before building any recipe of {}:\n\n{}",
            code(tag),
            code_block("", reason)
        ),
    )
}

/// A check run an earlier attempt of the same release job left open (that attempt
/// stopped: its process died or lost its lease), concluded by the attempt that ended
/// without reaching its recipe. `failure` is the first line of that attempt's (redacted)
/// error, `None` when it finished.
pub fn abandoned_check_run(
    tag: &str,
    recipe_check: &str,
    failure: Option<&str>,
) -> (String, String) {
    let outcome = match failure {
        None => "the job finished".to_string(),
        Some(line) => format!("the job failed ({})", super::inert(line)),
    };
    (
        format!("{recipe_check} was not finished"),
        format!(
            "The attempt that started this check for {} stopped before it finished. The \
             job's next attempt ended without building it again: {}.\n\nPush the tag \
             again (or a new tag) to build it.",
            code(tag),
            outcome
        ),
    )
}

/// A release tag now points at another commit than the one its version was built from.
pub fn moved_tag(tag: &str, built_sha: &str, new_sha: &str) -> String {
    format!(
        "{}\n### :no_entry: bakery did not rebuild {}\n\nThe tag {} now points at {}, but \
         version {} was already built from {}. A version is built once, from one commit, so \
         that an image's version always names the same content.\n\nTo release this commit, \
         push a new tag (for example the next version). To build the same version again, \
         move the tag back to {}.\n",
        super::marker("refusal"),
        code(tag),
        code(tag),
        code(short_sha(new_sha)),
        code(tag),
        code(short_sha(built_sha)),
        code(short_sha(built_sha)),
    )
}

/// A version that already has images (e.g. the same tag pushed again, or a rerun after
/// the images exist).
pub fn already_built(version: &str, recipe: &str, existing: &[ImageRow]) -> String {
    format!(
        "{}\n### :information_source: {} of {} is already built\n\nbakery found images of \
         this version, so it built nothing new:\n\n{}\nTo build again, delete these images \
         (or deregister them) first, or release a new version.\n",
        super::marker("refusal"),
        code(version),
        code(recipe),
        image_table(existing)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_tag_snapshot() {
        let c = moved_tag(
            "release-0.1.0",
            "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c",
            "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d",
        );
        assert!(c.contains("`3f2a9c1`") && c.contains("`9e8d7c6`"));
        insta::assert_snapshot!(c);
    }

    #[test]
    fn tag_moved_before_build_snapshot() {
        let c = tag_moved_before_build(
            "release-0.1.0",
            "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c",
            "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d",
        );
        insta::assert_snapshot!(c);
    }

    #[test]
    fn invalid_recipes_snapshot() {
        let c = invalid_recipes(
            "release-0.1.0",
            &["recipes/base/recipe.toml:3:1: error: unknown key `sorce`".into()],
        );
        insta::assert_snapshot!(c);
    }

    #[test]
    fn release_not_started_fences_the_reason() {
        let (title, summary) = release_not_started(
            "release-0.1.0",
            "cannot fetch acme/images: ```evil``` fence",
        );
        assert_eq!(title, "release-0.1.0 was not built");
        assert!(summary.contains("````\ncannot fetch"), "{summary}");
        insta::assert_snapshot!(summary);
    }

    #[test]
    fn abandoned_check_run_snapshot() {
        let (title, summary) = abandoned_check_run(
            "release-0.1.0",
            "bakery/base",
            Some("cannot fetch acme/images, cc @acme/security-team"),
        );
        assert_eq!(title, "bakery/base was not finished");
        assert!(!summary.contains("@acme"), "{summary}");
        insta::assert_snapshot!(summary);
        let (_, finished) = abandoned_check_run("release-0.1.0", "bakery/base", None);
        assert!(finished.contains(": the job finished."), "{finished}");
    }

    #[test]
    fn already_built_snapshot() {
        let c = already_built(
            "release-0.1.0",
            "base",
            &[ImageRow {
                recipe: "base".into(),
                account: "111111111111".into(),
                region: "eu-west-1".into(),
                ami: "ami-0base000000000eu1".into(),
                kms_key: Some("alias/ami".into()),
            }],
        );
        assert!(c.contains("ami-0base000000000eu1"));
        insta::assert_snapshot!(c);
    }
}
