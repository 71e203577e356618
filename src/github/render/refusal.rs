//! Comments that explain why bakery refused to build a tag.

use super::{code, image_table, short_sha, ImageRow};

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
