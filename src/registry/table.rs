//! The text table of `bakery images`: one line per image, columns aligned, the git SHA
//! shortened. Pure.

use super::model::RegistryImage;

const HEADERS: [&str; 11] = [
    "RECIPE", "VERSION", "ACCOUNT", "REGION", "IMAGE", "STATE", "CHANNELS", "PARENT", "SHA",
    "REPO", "CREATED",
];

/// The table, or a line saying nothing matched.
pub fn render(images: &[RegistryImage]) -> String {
    if images.is_empty() {
        return "no released image matches\n".into();
    }
    let rows: Vec<[String; 11]> = images.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}

fn row(i: &RegistryImage) -> [String; 11] {
    let dash = || "-".to_string();
    let state = match &i.revoked_reason {
        Some(reason) => format!("{} ({reason})", i.state.as_str()),
        None => i.state.as_str().to_string(),
    };
    let parent = match &i.parent {
        Some(p) => match (&p.recipe, &p.version) {
            (Some(r), Some(v)) => format!("{r}@{v}"),
            _ => p.image_id.clone(),
        },
        None => dash(),
    };
    [
        i.recipe.clone(),
        i.version.clone(),
        i.account.clone(),
        i.region.clone(),
        i.image_id.clone(),
        state,
        if i.channels.is_empty() {
            dash()
        } else {
            i.channels.join(",")
        },
        parent,
        i.git_sha.chars().take(7).collect(),
        i.repo.clone().unwrap_or_else(dash),
        i.created_at.clone().unwrap_or_else(dash),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{ImageState, Parent};

    fn image(version: &str, region: &str, state: ImageState) -> RegistryImage {
        RegistryImage {
            recipe: "base".into(),
            version: version.into(),
            git_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            repo: Some("acme/images".into()),
            account: "123456789012".into(),
            region: region.into(),
            image_id: format!("ami-{version}-{region}"),
            name: None,
            created_at: Some("2026-01-01T00:00:00.000Z".into()),
            build_id: "b".into(),
            channels: vec![],
            state,
            revoked_reason: None,
            parent: Some(Parent {
                image_id: "ami-0source".into(),
                recipe: None,
                version: None,
            }),
        }
    }

    #[test]
    fn the_table_aligns_every_column() {
        let mut revoked = image("release-0.1.0", "us-east-1", ImageState::Revoked);
        revoked.revoked_reason = Some("CVE-2026-12345: openssl".into());
        let mut child = image("release-0.2.0", "eu-west-1", ImageState::Available);
        child.recipe = "app".into();
        child.channels = vec!["production".into(), "staging".into()];
        child.parent = Some(Parent {
            image_id: "ami-x".into(),
            recipe: Some("base".into()),
            version: Some("release-0.1.0".into()),
        });
        let mut gone = image("release-0.0.1", "eu-west-1", ImageState::Deregistered);
        gone.created_at = None;
        gone.repo = None;
        insta::assert_snapshot!(render(&[revoked, child, gone]));
    }

    #[test]
    fn an_empty_listing_says_so() {
        assert_eq!(render(&[]), "no released image matches\n");
    }
}
