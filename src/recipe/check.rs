//! Checks on parsed recipes that need no file system: AWS identifiers, duplicate regions,
//! paths that would leave the repository, unique image names, and the links between
//! recipes (`source.recipe` names a recipe; no cycles).

use std::collections::{BTreeMap, BTreeSet};

use super::aws_names::{self, Invalid};
use super::diagnostic::did_you_mean;
use super::reader::{Cx, Loc};
use super::repo_config::RepoConfig;
use super::spec::*;
use super::template::{Builtin, Segment, Text};
use super::values::{check_region, check_region_list, check_tag, literal, resolve_path};

fn report(cx: &Cx, v: &Loc<String>, r: Result<(), Invalid>) {
    if let Err(e) = r {
        cx.error(v.span.clone(), e.message, e.hint);
    }
}

/// Every check on one recipe that needs only the recipe and `bakery.toml`.
pub fn check_recipe(cx: &Cx, r: &RecipeSpec, config: &RepoConfig) {
    if !r.has_ec2_builder() {
        // A qemu-only recipe: no AWS builder, image or distribution to check.
        check_provision(cx, r);
        return;
    }
    if let Some(source) = &r.source {
        match &source.value {
            SourceSpec::Ami(id) => {
                if literal(cx, id, "a source AMI id") {
                    report(cx, id, aws_names::ami_id(&id.value));
                }
            }
            SourceSpec::Filter {
                owners,
                name,
                architecture,
                ..
            } => {
                for o in owners {
                    if literal(cx, o, "an image owner") {
                        report(cx, o, aws_names::image_owner(&o.value));
                    }
                }
                if name.value.source_text().trim().is_empty() {
                    cx.error(
                        name.span.clone(),
                        "the source image name filter is empty",
                        "write a glob on the image name, e.g. \"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*\"",
                    );
                }
                if let Some(a) = architecture {
                    report(cx, a, aws_names::architecture(&a.value));
                }
            }
            SourceSpec::Recipe { recipe, .. } => {
                literal(cx, recipe, "`source.recipe`");
            }
        }
    }
    check_builder(cx, r, config);
    check_provision(cx, r);
    check_image(cx, r);
    check_distribute(cx, r, config);
}

fn check_builder(cx: &Cx, r: &RecipeSpec, config: &RepoConfig) {
    let b = &r.builder;
    match &b.region {
        Some(region) => check_region(cx, region),
        None if config.defaults.region.is_none() => cx.error(
            b.span.clone(),
            "missing required key `region` in [builder]",
            "add region = \"eu-west-1\" to [builder], or a default region under [defaults] in bakery.toml",
        ),
        None => {}
    }
    if let Some(t) = &b.instance_type {
        if let [Segment::Literal(l)] = t.value.segments.as_slice() {
            report(
                cx,
                &Loc::new(l.clone(), t.span.clone()),
                aws_names::instance_type(l),
            );
        }
    }
    if let Some(s) = &b.subnet_id {
        if literal(cx, s, "a subnet id") {
            report(cx, s, aws_names::subnet_id(&s.value));
        }
    }
    if let Some(v) = &b.volume_type {
        report(cx, v, aws_names::volume_type(&v.value));
    }
    if let Some(c) = &b.ssh_cidr {
        if literal(cx, c, "ssh_cidr") {
            report(cx, c, aws_names::cidr(&c.value));
        }
    }
    if let Some(k) = &b.kms_key {
        if literal(cx, k, "a KMS key") {
            // A key ARN must be in the builder's region: the root volume is there.
            let region = b
                .region
                .as_ref()
                .map(|r| r.value.as_str())
                .or(config.defaults.region.as_deref())
                .filter(|r| aws_names::region(r).is_ok());
            match (aws_names::kms_key(&k.value, None), region) {
                (Err(e), _) => cx.error(k.span.clone(), e.message, e.hint),
                (Ok(()), Some(r)) if aws_names::kms_key(&k.value, Some(r)).is_err() => cx.error(
                    k.span.clone(),
                    format!("KMS key `{}` is not in the builder's region {r}", k.value),
                    format!("use a key in {r} (e.g. kms_key = \"alias/ami\"): the builder's root volume is created there"),
                ),
                (Ok(()), _) => {}
            }
        }
    }
}

fn check_provision(cx: &Cx, r: &RecipeSpec) {
    for step in &r.provision {
        for p in step.paths() {
            if let Err(e) = resolve_path(&r.dir, &p.value) {
                cx.error(p.span.clone(), e.message, e.hint);
            }
        }
    }
}

fn check_image(cx: &Cx, r: &RecipeSpec) {
    if let Some(name) = &r.image.name {
        check_image_name(cx, name);
    }
    for (k, _) in r.image.tags.iter().chain(&r.image.snapshot_tags) {
        check_tag(cx, k, None);
    }
}

/// The image name must differ from one version to the next, or the second release would
/// collide with the first: it has to use `{{ version }}`.
fn check_image_name(cx: &Cx, name: &Text) {
    if !name.value.uses_builtin(Builtin::Version) {
        let hint = if name.value.uses_builtin(Builtin::BuildTime)
            || name.value.uses_builtin(Builtin::GitSha)
        {
            "build_time and git_sha don't identify a release; add {{ version }}, e.g. \"{{ recipe }}-{{ version }}\""
        } else {
            "add {{ version }}, e.g. name = \"{{ recipe }}-{{ version }}\""
        };
        cx.error(
            name.span.clone(),
            "the image name is not unique per version: it does not use `{{ version }}`",
            hint,
        );
    }
    for s in &name.value.segments {
        if let Segment::Literal(l) = s {
            let bad: BTreeSet<char> = l
                .chars()
                .filter(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
                .collect();
            if !bad.is_empty() {
                let shown: Vec<String> = bad.iter().map(|c| format!("`{c}`")).collect();
                cx.error(
                    name.span.clone(),
                    format!(
                        "the image name has characters EC2 does not allow: {}",
                        shown.join(" ")
                    ),
                    "an AMI name may hold letters, digits, spaces and ( ) [ ] . / - ' @ _",
                );
                break;
            }
        }
    }
}

fn check_targets(cx: &Cx, t: &RegionsSpec, regions: &[String], table: &str) {
    if let Some(list) = &t.regions {
        check_region_list(cx, list, table);
        if list.value.is_empty() {
            cx.error(
                list.span.clone(),
                format!("`regions` in {table} is empty"),
                "list at least one region, or leave `regions` out to use the default",
            );
        }
    }
    if let Some(k) = &t.kms_key {
        if literal(cx, k, "a KMS key") {
            let arn_region = regions
                .iter()
                .find(|r| aws_names::kms_key(&k.value, Some(r)).is_err());
            match (aws_names::kms_key(&k.value, None), arn_region) {
                (Err(e), _) => cx.error(k.span.clone(), e.message, e.hint),
                (Ok(()), Some(r)) => {
                    if let Err(e) = aws_names::kms_key(&k.value, Some(r)) {
                        cx.error(
                            k.span.clone(),
                            e.message,
                            format!("`kms_key` applies to every region of {table}; give {r} its own key in kms_keys, e.g. kms_keys = {{ {r} = \"alias/ami\" }}"),
                        );
                    }
                }
                (Ok(()), None) => {}
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (region, key) in &t.kms_keys {
        check_region(cx, region);
        if !seen.insert(region.value.as_str()) {
            cx.error(
                region.span.clone(),
                format!("region `{}` has two keys in kms_keys", region.value),
                "keep one",
            );
        }
        if !regions.contains(&region.value) && aws_names::region(&region.value).is_ok() {
            cx.error(
                region.span.clone(),
                format!(
                    "kms_keys names `{}`, which is not a target region of {table}",
                    region.value
                ),
                format!("add `{}` to regions, or remove its key", region.value),
            );
        }
        if literal(cx, key, "a KMS key") {
            report(cx, key, aws_names::kms_key(&key.value, Some(&region.value)));
        }
    }
}

fn check_distribute(cx: &Cx, r: &RecipeSpec, config: &RepoConfig) {
    let d = &r.distribute;
    let home = r.home_regions(config);
    check_targets(cx, &d.home, &home, "[distribute]");
    if let Some(e) = &d.encrypted {
        if !e.value {
            cx.warning(
                e.span.clone(),
                "images will be copied unencrypted",
                "remove encrypted = false unless unencrypted images are really wanted",
            );
        }
    }
    let mut accounts = BTreeSet::new();
    for a in &d.accounts {
        let Some(id) = &a.account_id else { continue };
        if !literal(cx, id, "an account id") {
            continue;
        }
        let id_ok = aws_names::account_id(&id.value);
        report(cx, id, id_ok.clone());
        if !accounts.insert(id.value.as_str()) {
            cx.error(
                id.span.clone(),
                format!(
                    "account `{}` is listed twice in [[distribute.accounts]]",
                    id.value
                ),
                "merge the two entries: list all of the account's regions in one",
            );
        }
        match &a.role_arn {
            Some(role) if literal(cx, role, "a role ARN") => match aws_names::role_arn(&role.value) {
                Ok(role_account) if id_ok.is_ok() && role_account != id.value => cx.error(
                    role.span.clone(),
                    format!("role `{}` is in account {role_account}, not {}", role.value, id.value),
                    format!("use a role in account {} (bakery assumes it to copy the image there)", id.value),
                ),
                Ok(_) => {}
                Err(e) => cx.error(role.span.clone(), e.message, e.hint),
            },
            Some(_) => {}
            None if config.defaults.account_role.is_none() => cx.error(
                a.span.clone(),
                format!("account `{}` has no role_arn", id.value),
                format!(
                    "add role_arn = \"arn:aws:iam::{}:role/ROLE\", or a default account_role under [defaults] in bakery.toml",
                    id.value
                ),
            ),
            None => {}
        }
        let regions = r.account_regions(a, config);
        check_targets(cx, &a.targets, &regions, &format!("account {}", id.value));
    }
    let lp = &d.launch_permissions;
    for a in &lp.account_ids {
        report(cx, a, aws_names::account_id(&a.value));
    }
    for a in &lp.organization_arns {
        report(cx, a, aws_names::organization_arn(&a.value));
    }
    for a in &lp.organizational_unit_arns {
        report(cx, a, aws_names::organizational_unit_arn(&a.value));
    }
}

/// Checks across recipes: `source.recipe` names a recipe, recipes don't source each other
/// in a cycle, and the source recipe's images reach the builder region. `cxs` holds
/// each recipe's diagnostics.
pub fn check_links(
    recipes: &BTreeMap<String, RecipeSpec>,
    cxs: &BTreeMap<String, Cx>,
    config: &RepoConfig,
) {
    let names: Vec<&str> = recipes.keys().map(String::as_str).collect();
    for (name, r) in recipes {
        let cx = &cxs[name];
        let Some(Loc {
            value: SourceSpec::Recipe { recipe: src, .. },
            ..
        }) = &r.source
        else {
            continue;
        };
        let Some(base) = recipes.get(&src.value) else {
            let hint = match did_you_mean(&src.value, names.iter().copied()) {
                Some(m) => format!("did you mean \"{m}\"?"),
                None => format!(
                    "recipes are the folders under recipes/: {}",
                    names.join(", ")
                ),
            };
            cx.error(
                src.span.clone(),
                format!("source recipe `{}` does not exist", src.value),
                hint,
            );
            continue;
        };
        if let Some(cycle) = cycle_from(recipes, name) {
            cx.error(
                src.span.clone(),
                format!(
                    "recipes source each other in a cycle: {}",
                    cycle.join(" → ")
                ),
                "one recipe in the chain must start from an AMI id or filter",
            );
            continue;
        }
        if let Some(region) = r.builder_region(config) {
            if !base.home_regions(config).contains(&region) {
                cx.error(
                    src.span.clone(),
                    format!(
                        "recipe `{}` has no image in {region}, where `{name}` builds",
                        src.value
                    ),
                    format!("add {region} to the regions of {}'s [distribute], or build {name} in one of them", src.value),
                );
            }
        }
    }
}

/// The cycle `start` is part of, as `start → ... → start`.
fn cycle_from(recipes: &BTreeMap<String, RecipeSpec>, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut current = start;
    loop {
        let next = recipes.get(current)?.source_recipe()?;
        if next == start {
            chain.push(next.to_string());
            return Some(chain);
        }
        if chain.iter().any(|c| c == next) || !recipes.contains_key(next) {
            // A cycle that `start` leads into but is not part of: reported on its members.
            return None;
        }
        chain.push(next.to_string());
        current = next;
    }
}

static SECRET_PATTERNS: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
    std::sync::LazyLock::new(|| {
        [
            (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "an AWS access key id"),
            (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "a private key"),
            (r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", "a GitHub token"),
            (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "a Slack token"),
        ]
        .into_iter()
        .map(|(re, what)| (regex::Regex::new(re).expect("secret pattern"), what))
        .collect()
    });

/// Recipes are committed to git and their values end up in images, tags and logs: a
/// value that looks like a credential is refused.
pub fn check_secrets(cx: &Cx) {
    for (re, what) in SECRET_PATTERNS.iter() {
        for m in re.find_iter(&cx.file.text) {
            cx.error(
                m.range(),
                format!("this looks like {what}"),
                "remove it and rotate it: recipes are committed and their values end up in images, tags and logs; give the build credentials through the builder's instance role instead",
            );
        }
    }
}
