//! The KMS keys a build uses: each copy's key, in the copy's account and region, must be
//! symmetric, customer managed and enabled, and the account's role must be able to have
//! EC2 use it (a `DryRun` CreateGrant and GenerateDataKeyWithoutPlaintext). An encrypted
//! intermediate's key must let every target account use it (a `DryRun` CreateGrant to
//! that account from the home account, as distribution makes). Creates no grant.

use aws_sdk_kms::types::{GrantOperation, KeyManagerType, KeySpec, KeyUsageType};

use super::{Area, Check, DryRun};
use crate::aws::error::{aws_error, AwsError, SdkResultExt};
use crate::aws::{policy, AwsSession, Target};

/// The key-policy statement that lets `accounts` use a key for bakery's copies.
pub fn key_policy_statement(accounts: &[String]) -> String {
    let principals: Vec<String> = accounts
        .iter()
        .map(|a| format!("\"arn:aws:iam::{a}:root\""))
        .collect();
    format!(
        "add to the key policy: {{\"Sid\": \"BakeryCopies\", \"Effect\": \"Allow\", \
         \"Principal\": {{\"AWS\": [{}]}}, \"Action\": [\"kms:DescribeKey\", \
         \"kms:CreateGrant\", \"kms:Decrypt\", \"kms:ReEncrypt*\", \
         \"kms:GenerateDataKeyWithoutPlaintext\"], \"Resource\": \"*\"}}",
        principals.join(", ")
    )
}

const IAM_FIX: &str = "the identity needs kms:DescribeKey, kms:CreateGrant, kms:Decrypt, \
    kms:ReEncrypt* and kms:GenerateDataKey* on the key, which the shipped policies allow for keys \
    aliased alias/ami* (EncryptCopiesWithTheAmiKeys / EncryptWithTheAmiKeys)";

/// Reads `key` in `target` and checks what EC2 needs of it. Returns the check and the
/// key's ARN when it can be used.
async fn describe(
    session: &AwsSession,
    target: &Target,
    key: &str,
    name: &str,
) -> (Check, Option<String>) {
    let kms = match session.kms(target) {
        Ok(k) => k,
        Err(e) => {
            return (
                Check::fail(
                    Area::Kms,
                    name,
                    target.to_string(),
                    format!("{e:#}"),
                    "check the account's role",
                ),
                None,
            )
        }
    };
    let out = policy::call(&format!("describe KMS key {key}"), || async {
        kms.describe_key().key_id(key).send().await.aws()
    })
    .await;
    let meta = match out {
        Ok(o) => o.key_metadata().cloned(),
        Err(e) => {
            let fix = if aws_error(&e).is_some_and(AwsError::is_not_found) {
                format!("create the key (or its alias) {key} in {target}, or fix the recipe's kms key for this target")
            } else {
                IAM_FIX.to_string()
            };
            return (
                Check::fail(
                    Area::Kms,
                    name,
                    target.to_string(),
                    format!("{key}: {e:#}"),
                    fix,
                ),
                None,
            );
        }
    };
    let Some(meta) = meta else {
        return (
            Check::fail(
                Area::Kms,
                name,
                target.to_string(),
                format!("{key}: no metadata"),
                "check the key",
            ),
            None,
        );
    };
    let mut problems = vec![];
    if meta.key_manager() == Some(&KeyManagerType::Aws) {
        problems.push(
            "it is AWS managed (it cannot be shared or granted to other accounts)".to_string(),
        );
    }
    let spec = meta
        .key_spec()
        .cloned()
        .unwrap_or(KeySpec::SymmetricDefault);
    if spec != KeySpec::SymmetricDefault {
        problems.push(format!(
            "its spec is {} (EBS needs SYMMETRIC_DEFAULT)",
            spec.as_str()
        ));
    }
    let usage = meta
        .key_usage()
        .cloned()
        .unwrap_or(KeyUsageType::EncryptDecrypt);
    if usage != KeyUsageType::EncryptDecrypt {
        problems.push(format!(
            "its usage is {} (EBS needs ENCRYPT_DECRYPT)",
            usage.as_str()
        ));
    }
    let state = meta.key_state().map(|s| s.as_str().to_string());
    if !meta.enabled() || state.as_deref().unwrap_or("Enabled") != "Enabled" {
        problems.push(format!(
            "it is {}",
            state.unwrap_or_else(|| "disabled".into())
        ));
    }
    let arn = meta.arn().unwrap_or(key).to_string();
    if problems.is_empty() {
        (
            Check::pass(
                Area::Kms,
                name,
                target.to_string(),
                format!("{key}: symmetric, customer managed, enabled"),
            ),
            Some(arn),
        )
    } else {
        (
            Check::fail(
                Area::Kms,
                name,
                target.to_string(),
                format!("{key}: {}", problems.join("; ")),
                "use a symmetric customer managed key (aws kms create-key) aliased alias/ami*, enabled",
            ),
            None,
        )
    }
}

/// A DryRun CreateGrant on `key_arn` for `grantee_account`'s root, with the operations
/// EBS uses.
async fn grant_probe(
    session: &AwsSession,
    target: &Target,
    key_arn: &str,
    grantee_account: &str,
) -> DryRun {
    let Ok(kms) = session.kms(target) else {
        return DryRun::Error("no KMS client".into());
    };
    let grantee = format!("arn:aws:iam::{grantee_account}:root");
    DryRun::of(
        policy::call("DryRun CreateGrant", || async {
            kms.create_grant()
                .dry_run(true)
                .key_id(key_arn)
                .grantee_principal(&grantee)
                .operations(GrantOperation::Decrypt)
                .operations(GrantOperation::DescribeKey)
                .operations(GrantOperation::CreateGrant)
                .operations(GrantOperation::ReEncryptFrom)
                .operations(GrantOperation::ReEncryptTo)
                .operations(GrantOperation::GenerateDataKeyWithoutPlaintext)
                .send()
                .await
                .aws()
        })
        .await,
    )
}

fn probe_check(name: &str, target: &Target, result: DryRun, fix: String) -> Check {
    match result {
        DryRun::Allowed => Check::pass(
            Area::Kms,
            name,
            target.to_string(),
            "DryRun: would be allowed",
        ),
        DryRun::Denied(e) => Check::fail(
            Area::Kms,
            name,
            target.to_string(),
            format!("DryRun: denied ({e})"),
            fix,
        ),
        DryRun::Error(e) => Check::fail(
            Area::Kms,
            name,
            target.to_string(),
            format!("DryRun: {e}"),
            "fix what the answer names",
        ),
    }
}

/// A copy's key in its account and region: usable by that account's identity.
pub async fn copy_key(session: &AwsSession, target: &Target, key: Option<&str>) -> Vec<Check> {
    let Some(key) = key else {
        return vec![Check::skip(
            Area::Kms,
            "copy key",
            target.to_string(),
            "no kms key: the copy uses the account's default EBS key",
        )];
    };
    let (check, arn) = describe(session, target, key, "copy key").await;
    let mut out = vec![check];
    let Some(arn) = arn else {
        return out;
    };
    out.push(probe_check(
        "kms:CreateGrant",
        target,
        grant_probe(session, target, &arn, &target.account).await,
        IAM_FIX.to_string(),
    ));
    let data_key = match session.kms(target) {
        Ok(kms) => DryRun::of(
            policy::call("DryRun GenerateDataKeyWithoutPlaintext", || async {
                kms.generate_data_key_without_plaintext()
                    .dry_run(true)
                    .key_id(&arn)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .send()
                    .await
                    .aws()
            })
            .await,
        ),
        Err(e) => DryRun::Error(format!("{e:#}")),
    };
    out.push(probe_check(
        "kms:GenerateDataKeyWithoutPlaintext",
        target,
        data_key,
        IAM_FIX.to_string(),
    ));
    out
}

/// The key an encrypted intermediate is under, in the builder region: every other
/// account copies from it, so each must be granted its use.
pub async fn intermediate_key(
    session: &AwsSession,
    builder: &Target,
    key: Option<&str>,
    other_accounts: &[String],
) -> Vec<Check> {
    let Some(key) = key else {
        return vec![Check::pass(
            Area::Kms,
            "intermediate key",
            builder.to_string(),
            "the intermediate image is unencrypted: no key to share",
        )];
    };
    if key.ends_with("alias/aws/ebs") {
        return vec![Check::fail(
            Area::Kms,
            "intermediate key",
            builder.to_string(),
            "the intermediate image would be under the AWS managed key aws/ebs",
            "set builder.kms_key in the recipe to a customer managed key aliased alias/ami*, or encrypt the source image, or the region's default EBS key, with one",
        )];
    }
    let (check, arn) = describe(session, builder, key, "intermediate key").await;
    let mut out = vec![check];
    let Some(arn) = arn else {
        return out;
    };
    for account in other_accounts {
        let result = grant_probe(session, builder, &arn, account).await;
        let fix = format!(
            "{} (and the home identity needs kms:CreateGrant on it)",
            key_policy_statement(std::slice::from_ref(account))
        );
        let mut c = probe_check("kms:CreateGrant", builder, result, fix);
        c.detail = format!("to account {account}: {}", c.detail);
        out.push(c);
    }
    out
}
