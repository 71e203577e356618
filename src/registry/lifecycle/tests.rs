//! The lifecycle planner's decisions, one rule or protection at a time.

use super::*;
use crate::registry::model::Parent;

const REPO: &str = "acme/images";

fn now() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn days_ago(d: i64) -> String {
    (now() - chrono::Duration::days(d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One copy of `recipe@version` released `age_days` ago in `region`.
fn image(recipe: &str, version: &str, age_days: i64, region: &str) -> RegistryImage {
    RegistryImage {
        recipe: recipe.into(),
        version: version.into(),
        git_sha: "0".repeat(40),
        repo: Some(REPO.into()),
        account: "111111111111".into(),
        region: region.into(),
        image_id: format!("ami-{recipe}-{version}-{region}"),
        name: None,
        created_at: Some(days_ago(age_days)),
        build_id: format!("b-{recipe}-{version}"),
        channels: vec![],
        state: ImageState::Available,
        revoked_reason: None,
        parent: None,
    }
}

/// `base` released three times, 30, 20 and 10 days ago, in two regions each.
fn three_releases() -> Vec<RegistryImage> {
    let mut out = vec![];
    for (v, age) in [
        ("release-0.1.0", 30),
        ("release-0.2.0", 20),
        ("release-0.3.0", 10),
    ] {
        for r in ["eu-west-1", "us-east-1"] {
            out.push(image("base", v, age, r));
        }
    }
    out
}

fn rules(r: LifecycleRules) -> Rules {
    Rules {
        default: LifecycleRules::default(),
        recipes: BTreeMap::from([("base".to_string(), r)]),
    }
}

fn keep(n: u32) -> LifecycleRules {
    LifecycleRules {
        keep: Some(n),
        ..LifecycleRules::default()
    }
}

fn run(
    images: &[RegistryImage],
    rules: &Rules,
    channels: &Channels,
    pins: &[SourcePin],
) -> LifecyclePlan {
    plan(PlanInput {
        repo: Some(REPO),
        images,
        rules,
        channels,
        pins,
        now: now(),
    })
}

/// `version: verdict` per entry, e.g. `release-0.1.0: deregister` or
/// `release-0.1.0: spare deregister (channel production points at it)`.
fn summary(p: &LifecyclePlan) -> Vec<String> {
    p.entries
        .iter()
        .map(|e| match &e.verdict {
            Verdict::Retire { action, .. } => format!("{}: {}", e.version, action.as_str()),
            Verdict::Spare { action, spared, .. } => {
                format!("{}: spare {} ({spared})", e.version, action.as_str())
            }
        })
        .collect()
}

#[test]
fn keep_n_deregisters_every_copy_of_the_older_releases() {
    let p = run(
        &three_releases(),
        &rules(keep(1)),
        &Channels::default(),
        &[],
    );
    assert_eq!(
        summary(&p),
        vec!["release-0.1.0: deregister", "release-0.2.0: deregister"]
    );
    let e = &p.entries[0];
    assert_eq!(e.copies.len(), 2, "both regions");
    assert_eq!(
        e.verdict,
        Verdict::Retire {
            action: Action::Deregister,
            why: Why::Keep { keep: 1, rank: 3 }
        }
    );
    assert_eq!(e.copies[0].build_id, "b-base-release-0.1.0");

    let p = run(
        &three_releases(),
        &rules(keep(3)),
        &Channels::default(),
        &[],
    );
    assert!(p.entries.is_empty(), "{p:#?}");
}

#[test]
fn no_rules_retire_nothing_and_a_removed_recipe_takes_the_defaults() {
    let none = run(
        &three_releases(),
        &Rules::default(),
        &Channels::default(),
        &[],
    );
    assert!(none.entries.is_empty());
    let grace_only = rules(LifecycleRules {
        grace_period_secs: Some(1),
        ..LifecycleRules::default()
    });
    assert!(
        run(&three_releases(), &grace_only, &Channels::default(), &[])
            .entries
            .is_empty()
    );
    // `base` is no longer a recipe of the repository: bakery.toml's rules apply.
    let defaults = Rules {
        default: keep(2),
        recipes: BTreeMap::new(),
    };
    let p = run(&three_releases(), &defaults, &Channels::default(), &[]);
    assert_eq!(summary(&p), vec!["release-0.1.0: deregister"]);
}

#[test]
fn a_channel_image_stays_whether_the_file_or_its_tag_says_so() {
    let mut channels = Channels::default();
    channels.channels.insert(
        "production".into(),
        BTreeMap::from([("base".to_string(), "release-0.1.0".to_string())]),
    );
    let p = run(&three_releases(), &rules(keep(1)), &channels, &[]);
    assert_eq!(
        summary(&p),
        vec![
            "release-0.1.0: spare deregister (channel production points at it)",
            "release-0.2.0: deregister"
        ]
    );
    assert!(p
        .entries
        .iter()
        .filter(|e| e.retires().is_some())
        .all(|e| e.version != "release-0.1.0"));

    // The same channel in the file for another recipe does not protect base.
    let mut other = Channels::default();
    other.channels.insert(
        "production".into(),
        BTreeMap::from([("app".to_string(), "release-0.1.0".to_string())]),
    );
    assert_eq!(
        run(&three_releases(), &rules(keep(1)), &other, &[])
            .entries
            .iter()
            .filter(|e| e.retires().is_some())
            .count(),
        2
    );

    // One copy tagged into a channel protects the whole release.
    let mut images = three_releases();
    images[3].channels = vec!["staging".into()];
    let p = run(&images, &rules(keep(1)), &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec![
            "release-0.1.0: deregister",
            "release-0.2.0: spare deregister (channel staging points at it)"
        ]
    );
}

#[test]
fn a_parent_in_use_stays_whichever_repository_built_on_it() {
    let mut images = three_releases();
    let mut child = image("app", "release-1.0.0", 15, "eu-west-1");
    child.repo = Some("acme/apps".into());
    // The parent link as the registry reads it: the source image's id, unresolved here.
    child.parent = Some(Parent {
        image_id: "ami-base-release-0.1.0-eu-west-1".into(),
        recipe: None,
        version: None,
    });
    images.push(child.clone());
    let p = run(&images, &rules(keep(1)), &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec![
            "release-0.1.0: spare deregister (app@release-1.0.0 was built on it)",
            "release-0.2.0: deregister"
        ]
    );
    // A resolved parent link in another region names the release too.
    let mut images = three_releases();
    child.parent = Some(Parent {
        image_id: "ami-elsewhere".into(),
        recipe: Some("base".into()),
        version: Some("release-0.2.0".into()),
    });
    images.push(child.clone());
    assert_eq!(
        summary(&run(&images, &rules(keep(1)), &Channels::default(), &[])),
        vec![
            "release-0.1.0: deregister",
            "release-0.2.0: spare deregister (app@release-1.0.0 was built on it)"
        ]
    );
    // A child that is itself gone from the cloud no longer holds its parent.
    let mut images = three_releases();
    child.state = ImageState::Deregistered;
    images.push(child);
    assert_eq!(
        run(&images, &rules(keep(1)), &Channels::default(), &[])
            .entries
            .iter()
            .filter(|e| e.retires().is_some())
            .count(),
        2
    );
}

#[test]
fn a_source_pin_keeps_its_release_and_latest_keeps_the_newest_usable() {
    let pins = [SourcePin {
        by: "app".into(),
        recipe: "base".into(),
        version: "release-0.2.0".into(),
    }];
    let dereg = rules(LifecycleRules {
        deregister_after_secs: Some(5 * 86400),
        ..LifecycleRules::default()
    });
    let p = run(&three_releases(), &dereg, &Channels::default(), &pins);
    assert_eq!(
        summary(&p),
        vec![
            "release-0.1.0: deregister",
            "release-0.2.0: spare deregister (recipe app builds on it)",
            "release-0.3.0: deregister"
        ]
    );
    let latest = [SourcePin {
        by: "app".into(),
        recipe: "base".into(),
        version: "latest".into(),
    }];
    let p = run(&three_releases(), &dereg, &Channels::default(), &latest);
    assert_eq!(
        p.entries.last().map(|e| e.retires()),
        Some(None),
        "the newest stays: {p:#?}"
    );
}

#[test]
fn the_grace_period_spares_young_releases_one_day_by_default() {
    let mut images = three_releases();
    for i in images.iter_mut().filter(|i| i.version == "release-0.2.0") {
        i.created_at = Some(
            (now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    for i in images.iter_mut().filter(|i| i.version == "release-0.3.0") {
        i.created_at = Some(
            (now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    let p = run(&images, &rules(keep(1)), &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec![
            "release-0.1.0: deregister",
            "release-0.2.0: spare deregister (in its grace period until 2026-06-01T22:00:00Z)"
        ]
    );
    let short = rules(LifecycleRules {
        keep: Some(1),
        grace_period_secs: Some(60),
        ..LifecycleRules::default()
    });
    assert_eq!(
        run(&images, &short, &Channels::default(), &[])
            .entries
            .iter()
            .filter(|e| e.retires().is_some())
            .count(),
        2
    );
}

#[test]
fn durations_deprecate_then_deregister_and_keep_is_a_floor() {
    let r = rules(LifecycleRules {
        keep: Some(1),
        deprecate_after_secs: Some(15 * 86400),
        deregister_after_secs: Some(25 * 86400),
        ..LifecycleRules::default()
    });
    let p = run(&three_releases(), &r, &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec!["release-0.1.0: deregister", "release-0.2.0: deprecate"]
    );
    assert_eq!(
        p.entries[1].verdict,
        Verdict::Retire {
            action: Action::Deprecate,
            why: Why::DeprecateAfter {
                after_secs: 15 * 86400
            }
        }
    );
    // Without keep, even the newest goes once old enough.
    let r = rules(LifecycleRules {
        deprecate_after_secs: Some(5 * 86400),
        ..LifecycleRules::default()
    });
    assert_eq!(
        run(&three_releases(), &r, &Channels::default(), &[])
            .entries
            .iter()
            .filter(|e| e.retires().is_some())
            .count(),
        3
    );

    // A deprecation touches only the copies still available; none left, no entry.
    let mut images = three_releases();
    images[2].state = ImageState::Deprecated;
    images[3].state = ImageState::Deprecated;
    images[0].state = ImageState::Deprecated;
    let p = run(&images, &r, &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec!["release-0.1.0: deprecate", "release-0.3.0: deprecate"]
    );
    assert_eq!(p.entries[0].copies.len(), 1);
    assert_eq!(p.entries[0].copies[0].region, "us-east-1");
}

#[test]
fn a_revoked_release_holds_no_keep_place() {
    let mut images = three_releases();
    for i in images.iter_mut().filter(|i| i.version == "release-0.3.0") {
        i.state = ImageState::Revoked;
        i.revoked_reason = Some("CVE-2026-1".into());
    }
    let p = run(&images, &rules(keep(1)), &Channels::default(), &[]);
    assert_eq!(
        summary(&p),
        vec!["release-0.1.0: deregister", "release-0.3.0: deregister"]
    );
    // Revoked in the channels file, before any reconcile tagged it.
    let mut channels = Channels::default();
    channels.revoked.insert(
        Release {
            recipe: "base".into(),
            version: "release-0.3.0".into(),
        },
        "CVE-2026-1".into(),
    );
    let p = run(&three_releases(), &rules(keep(1)), &channels, &[]);
    assert_eq!(
        summary(&p),
        vec!["release-0.1.0: deregister", "release-0.3.0: deregister"]
    );
}

#[test]
fn only_this_repositorys_images_in_the_cloud_are_judged() {
    let mut images = three_releases();
    for i in images.iter_mut().filter(|i| i.version == "release-0.1.0") {
        i.repo = Some("someone/else".into());
    }
    images.push(RegistryImage {
        state: ImageState::Deregistered,
        ..image("base", "release-0.0.1", 90, "eu-west-1")
    });
    let p = run(&images, &rules(keep(1)), &Channels::default(), &[]);
    assert_eq!(summary(&p), vec!["release-0.2.0: deregister"]);
    assert!(p.entries.iter().all(|e| e.repo.as_deref() == Some(REPO)));
}
