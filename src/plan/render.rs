//! The plan as a platform engineer reads it: `bakery plan`'s text output.

use std::fmt::Write as _;

use super::model::*;

/// Shown where a value is only known while the build runs.
pub const BUILD_ID_PLACEHOLDER: &str = "<build id>";
pub const SOURCE_AMI_PLACEHOLDER: &str = "<resolved at build time>";

fn placeholder_facts() -> BuildFacts {
    BuildFacts {
        build_id: BUILD_ID_PLACEHOLDER.into(),
        source_ami: SOURCE_AMI_PLACEHOLDER.into(),
    }
}

/// `365d`, `1h 30m`, `90s`: the way recipes write durations.
pub fn duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, unit) in units {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Renders the whole plan. Sections follow the order of a build.
pub fn render_text(plan: &BuildPlan) -> String {
    let mut o = String::new();
    let facts = placeholder_facts();
    let _ = writeln!(o, "Plan: {} {}", plan.recipe, plan.version);
    let _ = writeln!(o, "  git sha     {}", plan.git_sha);
    let _ = writeln!(o, "  build time  {}", plan.build_time);
    if plan.image.ephemeral {
        let _ = writeln!(
            o,
            "  ephemeral   yes (pull request build: one copy, shared with no one)"
        );
    }

    let _ = writeln!(o, "\nSource");
    match &plan.source {
        SourcePlan::AmiId { id } => {
            let _ = writeln!(o, "  AMI {id} in {}", plan.builder.region);
        }
        SourcePlan::Filter {
            owners,
            name,
            architecture,
            most_recent,
        } => {
            let _ = writeln!(o, "  image filter in {}", plan.builder.region);
            let _ = writeln!(o, "    owners        {}", owners.join(", "));
            let _ = writeln!(o, "    name          {name}");
            if let Some(a) = architecture {
                let _ = writeln!(o, "    architecture  {a}");
            }
            let pick = if *most_recent {
                "the newest match"
            } else {
                "exactly one match (more is an error)"
            };
            let _ = writeln!(o, "    picks         {pick}");
        }
        SourcePlan::Recipe { recipe, version } => {
            let which = if version == "latest" {
                "the newest image".to_string()
            } else {
                format!("the image of version {version}")
            };
            let _ = writeln!(
                o,
                "  recipe {recipe}: {which} tagged {}={recipe} in {}",
                tag_keys::RECIPE,
                plan.builder.region
            );
        }
    }
    let _ = writeln!(o, "  resolves to   {SOURCE_AMI_PLACEHOLDER}");

    let b = &plan.builder;
    let _ = writeln!(o, "\nBuilder");
    let _ = writeln!(o, "  region        {}", b.region);
    let _ = writeln!(o, "  instance      {}", b.instance_type);
    let _ = writeln!(
        o,
        "  root volume   {} GiB {}",
        b.volume_size_gb, b.volume_type
    );
    let _ = writeln!(
        o,
        "  subnet        {}",
        b.subnet_id
            .as_deref()
            .unwrap_or("default subnet of the default VPC")
    );
    let _ = writeln!(
        o,
        "  metadata      {}",
        if b.imdsv2_required {
            "IMDSv2 required"
        } else {
            "IMDSv1 allowed"
        }
    );
    let addr = match &b.connect {
        ConnectVia::PublicIp => "<public ip>:22".to_string(),
        ConnectVia::PrivateIp => "<private ip>:22".to_string(),
        ConnectVia::Explicit { host, port } => format!("{host}:{port}"),
    };
    let _ = writeln!(
        o,
        "  ssh           {}@{addr} (port 22 open to {})",
        b.ssh_user, b.ssh_cidr
    );

    let _ = writeln!(o, "\nProvision ({})", count(plan.provision.len(), "step"));
    for (i, step) in plan.provision.iter().enumerate() {
        let n = i + 1;
        match step {
            ProvisionStep::Shell(s) => {
                let mut flags = vec![format!("timeout {}", duration(s.timeout_secs))];
                if s.sudo {
                    flags.insert(0, "sudo".into());
                }
                if s.expect_disconnect {
                    flags.push("may disconnect".into());
                }
                let _ = writeln!(o, "  {n}. shell: {} ({})", s.name, flags.join(", "));
                for (k, v) in &s.env {
                    let _ = writeln!(o, "       env {k}={v}");
                }
                match &s.run {
                    ShellRun::Inline { commands } => {
                        for c in commands {
                            for (j, line) in c.lines().enumerate() {
                                let mark = if j == 0 { "$" } else { " " };
                                let _ = writeln!(o, "       {mark} {line}");
                            }
                        }
                    }
                    ShellRun::Script { path } => {
                        let _ = writeln!(o, "       runs script {}", path.display());
                    }
                }
            }
            ProvisionStep::File(f) => {
                let mut extra = Vec::new();
                if let Some(m) = f.mode {
                    extra.push(format!("mode {m:04o}"));
                }
                if let Some(owner) = &f.owner {
                    extra.push(format!("owner {owner}"));
                }
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", extra.join(", "))
                };
                let _ = writeln!(o, "  {n}. file: {}", f.name);
                let _ = writeln!(
                    o,
                    "       {} -> {}{extra}",
                    f.source.display(),
                    f.destination
                );
            }
            ProvisionStep::Ansible(a) => {
                let mut flags = vec![format!("timeout {}", duration(a.timeout_secs))];
                if a.become_root {
                    flags.insert(0, "become".into());
                }
                let _ = writeln!(o, "  {n}. ansible: {} ({})", a.name, flags.join(", "));
                let _ = writeln!(o, "       playbook {}", a.playbook.display());
                for (k, v) in &a.extra_vars {
                    let _ = writeln!(o, "       extra var {k}={v}");
                }
                if !a.extra_args.is_empty() {
                    let _ = writeln!(o, "       args {}", a.extra_args.join(" "));
                }
            }
        }
    }

    let _ = writeln!(o, "\nStamp {}", plan.stamp.path);
    for line in plan.release_file(&facts).lines() {
        let _ = writeln!(o, "  | {line}");
    }

    let _ = writeln!(o, "\nVerify ({})", count(plan.verify.len(), "check"));
    for v in &plan.verify {
        match v {
            VerifyCheck::Command {
                name,
                command,
                sudo,
                expect_exit,
                expect_stdout,
            } => {
                let mut expect = format!("exit {expect_exit}");
                if let Some(s) = expect_stdout {
                    let _ = write!(expect, ", stdout {s:?}");
                }
                let sudo = if *sudo { "sudo " } else { "" };
                let _ = writeln!(o, "  - {name}: {sudo}`{command}` expects {expect}");
            }
            VerifyCheck::File {
                name,
                path,
                expect_content,
            } => match expect_content {
                Some(c) => {
                    let _ = writeln!(o, "  - {name}: {path} contains {c:?}");
                }
                None => {
                    let _ = writeln!(o, "  - {name}: {path} exists");
                }
            },
        }
    }

    let s = &plan.seal;
    let _ = writeln!(o, "\nSeal");
    if s.enabled {
        let items = [
            (s.host_keys, "SSH host keys"),
            (s.machine_id, "machine id"),
            (s.build_key, "build SSH key"),
            (s.cloud_init, "cloud-init state"),
            (s.provisioning_files, "provisioning files"),
            (s.shell_history, "shell history"),
        ];
        let on: Vec<&str> = items.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        let off: Vec<&str> = items.iter().filter(|(b, _)| !*b).map(|(_, n)| *n).collect();
        let _ = writeln!(
            o,
            "  removes       {}",
            if on.is_empty() {
                "nothing".into()
            } else {
                on.join(", ")
            }
        );
        if !off.is_empty() {
            let _ = writeln!(o, "  keeps         {}", off.join(", "));
        }
    } else {
        let _ = writeln!(
            o,
            "  off: the image keeps host keys, machine id and build files"
        );
    }

    let _ = writeln!(o, "\nImage");
    let _ = writeln!(o, "  name          {}", plan.image.name);
    let _ = writeln!(o, "  description   {}", plan.image.description);
    let _ = writeln!(o, "  tags");
    let tags = plan.image_tags(&facts);
    let width = tags.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in &tags {
        let _ = writeln!(o, "    {k:<width$}  {v}");
    }
    if !plan.image.snapshot_tags.is_empty() {
        let _ = writeln!(o, "  snapshot tags (besides the image tags)");
        let width = plan
            .image
            .snapshot_tags
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in &plan.image.snapshot_tags {
            let _ = writeln!(o, "    {k:<width$}  {v}");
        }
    }

    let d = &plan.distribute;
    let _ = writeln!(
        o,
        "\nCopies ({}, {})",
        count(d.copies.len(), "copy").replace("copys", "copies"),
        if d.encrypted {
            "encrypted"
        } else {
            "NOT encrypted"
        }
    );
    let rows: Vec<[String; 3]> = d
        .copies
        .iter()
        .map(|c| {
            [
                c.account
                    .as_ref()
                    .map(|a| a.account_id.clone())
                    .unwrap_or_else(|| "home".into()),
                c.region.clone(),
                match (&c.kms_key_id, d.encrypted) {
                    (Some(k), _) => k.clone(),
                    (None, true) => "account default EBS key".into(),
                    (None, false) => "-".into(),
                },
            ]
        })
        .collect();
    let header = ["ACCOUNT".to_string(), "REGION".into(), "KMS KEY".into()];
    let w: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in [&header].into_iter().chain(&rows) {
        let line = format!(
            "  {:<w0$}  {:<w1$}  {}",
            r[0],
            r[1],
            r[2],
            w0 = w[0],
            w1 = w[1]
        );
        let _ = writeln!(o, "{}", line.trim_end());
    }
    let mut roles: Vec<&AccountTarget> =
        d.copies.iter().filter_map(|c| c.account.as_ref()).collect();
    roles.dedup();
    for a in roles {
        let ext = if a.external_id.is_some() {
            " (with external id)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  account {} is reached through {}{ext}",
            a.account_id, a.role_arn
        );
    }
    let _ = writeln!(
        o,
        "  the unencrypted intermediate in {} is deleted after copying",
        plan.builder.region
    );

    let lp = &d.launch_permissions;
    let _ = writeln!(o, "\nLaunch permissions");
    if lp.account_ids.is_empty()
        && lp.organization_arns.is_empty()
        && lp.organizational_unit_arns.is_empty()
    {
        let _ = writeln!(o, "  none: only the accounts holding a copy can launch it");
    }
    for a in &lp.account_ids {
        let _ = writeln!(o, "  account       {a}");
    }
    for a in &lp.organization_arns {
        let _ = writeln!(o, "  organization  {a}");
    }
    for a in &lp.organizational_unit_arns {
        let _ = writeln!(o, "  OU            {a}");
    }
    let _ = writeln!(o, "\nDeprecation");
    match d.deprecate_after_secs {
        Some(s) => {
            let _ = writeln!(o, "  deprecated {} after the build", duration(s));
        }
        None => {
            let _ = writeln!(o, "  never");
        }
    }
    o
}
