//! Shape checks for AWS identifiers written in recipes: regions, account ids, KMS keys,
//! ARNs, AMI and subnet ids. Each returns the fix to suggest when the value is wrong.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::diagnostic::did_you_mean;

/// The commercial, China and GovCloud regions EC2 images can be built in and copied to.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// A problem with a value: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub hint: String,
}

fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        hint: hint.into(),
    }
}

static REGION_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z]{2}(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-[1-9][0-9]?$")
        .expect("region regex")
});
static ACCOUNT_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]{12}$").expect("account regex"));
static KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$")
        .expect("key id regex")
});
static ALIAS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^alias/[A-Za-z0-9/_-]{1,250}$").expect("alias regex"));
static KMS_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]+):([0-9]{12}):(key/.+|alias/.+)$")
        .expect("kms arn regex")
});
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$")
        .expect("role arn regex")
});
static ORG_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^arn:(aws|aws-cn|aws-us-gov):organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}$",
    )
    .expect("org arn regex")
});
static OU_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:(aws|aws-cn|aws-us-gov):organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
        .expect("ou arn regex")
});
static AMI_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$").expect("ami regex"));
static SUBNET_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$").expect("subnet regex"));
static INSTANCE_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$").expect("instance type regex"));

/// `Ok(None)` for a known region; `Ok(Some(warning))` for a well-formed region bakery
/// does not know (AWS may have opened it after this release).
pub fn region(s: &str) -> Result<Option<Invalid>, Invalid> {
    if REGIONS.contains(&s) {
        return Ok(None);
    }
    let hint = match did_you_mean(s, REGIONS.iter().copied()) {
        Some(m) => format!("did you mean `{m}`?"),
        None => "use a region code such as eu-west-1 or us-east-1".to_string(),
    };
    if REGION_SHAPE.is_match(s) {
        return Ok(Some(invalid(
            format!("`{s}` is not a region bakery knows"),
            format!("{hint} If AWS opened it recently, ignore this warning."),
        )));
    }
    Err(invalid(format!("`{s}` is not an AWS region"), hint))
}

pub fn account_id(s: &str) -> Result<(), Invalid> {
    if ACCOUNT_ID.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an AWS account id"),
            "an account id is exactly 12 digits, written as a string: \"111111111111\"",
        ))
    }
}

/// A KMS key as `CopyImage` takes it: key id, alias, key ARN or alias ARN. When the key
/// names a region (an ARN), it must be the region the copy goes to.
pub fn kms_key(s: &str, target_region: Option<&str>) -> Result<(), Invalid> {
    if KEY_ID.is_match(s) || ALIAS.is_match(s) {
        return Ok(());
    }
    if let Some(c) = KMS_ARN.captures(s) {
        let (region, rest) = (&c[2], &c[4]);
        if let Some(id) = rest.strip_prefix("key/") {
            if !KEY_ID.is_match(id) {
                return Err(invalid(
                    format!("`{s}` has a malformed key id `{id}`"),
                    "a key id is a UUID like 1234abcd-12ab-34cd-56ef-1234567890ab (or mrk-... for a multi-Region key)",
                ));
            }
        } else if !ALIAS.is_match(rest) {
            return Err(invalid(
                format!("`{s}` has a malformed alias"),
                "an alias is alias/ followed by letters, digits, /, _ or -",
            ));
        }
        if let Some(target) = target_region {
            if region != target {
                return Err(invalid(
                    format!("KMS key `{s}` is in {region}, but this copy goes to {target}"),
                    format!("use a key in {target}: EBS snapshots can only be encrypted with a key in their own region"),
                ));
            }
        }
        return Ok(());
    }
    Err(invalid(
        format!("`{s}` is not a KMS key id, alias or ARN"),
        "write a key id (1234abcd-12ab-34cd-56ef-1234567890ab), an alias (alias/ami) or an ARN (arn:aws:kms:eu-west-1:111111111111:key/...)",
    ))
}

/// An IAM role ARN; returns its account id.
pub fn role_arn(s: &str) -> Result<String, Invalid> {
    match ROLE_ARN.captures(s) {
        Some(c) => Ok(c[2].to_string()),
        None => Err(invalid(
            format!("`{s}` is not an IAM role ARN"),
            "write it as arn:aws:iam::111111111111:role/ROLE_NAME",
        )),
    }
}

pub fn organization_arn(s: &str) -> Result<(), Invalid> {
    if ORG_ARN.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an AWS Organizations organization ARN"),
            "write it as arn:aws:organizations::111111111111:organization/o-exampleorgid",
        ))
    }
}

pub fn organizational_unit_arn(s: &str) -> Result<(), Invalid> {
    if OU_ARN.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an organizational unit ARN"),
            "write it as arn:aws:organizations::111111111111:ou/o-exampleorgid/ou-abcd-12345678",
        ))
    }
}

pub fn ami_id(s: &str) -> Result<(), Invalid> {
    if AMI_ID.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an AMI id"),
            "an AMI id is ami- followed by 8 or 17 hex digits, e.g. ami-0123456789abcdef0",
        ))
    }
}

/// An image owner for a source filter: an account id or one of EC2's owner aliases.
pub fn image_owner(s: &str) -> Result<(), Invalid> {
    if ACCOUNT_ID.is_match(s) || ["amazon", "aws-marketplace", "self"].contains(&s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an image owner"),
            "an owner is a 12-digit account id (Canonical is \"099720109477\") or amazon, aws-marketplace, self",
        ))
    }
}

pub fn subnet_id(s: &str) -> Result<(), Invalid> {
    if SUBNET_ID.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not a subnet id"),
            "a subnet id is subnet- followed by 8 or 17 hex digits",
        ))
    }
}

pub fn instance_type(s: &str) -> Result<(), Invalid> {
    if INSTANCE_TYPE.is_match(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not an EC2 instance type"),
            "write a family and size, e.g. t3.small or m7i.large",
        ))
    }
}

pub const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

pub fn volume_type(s: &str) -> Result<(), Invalid> {
    if VOLUME_TYPES.contains(&s) {
        return Ok(());
    }
    let hint = match did_you_mean(s, VOLUME_TYPES.iter().copied()) {
        Some(m) => format!("did you mean `{m}`?"),
        None => format!("use one of: {}", VOLUME_TYPES.join(", ")),
    };
    Err(invalid(format!("`{s}` is not an EBS volume type"), hint))
}

pub const ARCHITECTURES: &[&str] = &["x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac"];

pub fn architecture(s: &str) -> Result<(), Invalid> {
    if ARCHITECTURES.contains(&s) {
        return Ok(());
    }
    let hint = match s {
        "amd64" => "EC2 calls it `x86_64`".to_string(),
        "aarch64" => "EC2 calls it `arm64`".to_string(),
        _ => format!("use one of: {}", ARCHITECTURES.join(", ")),
    };
    Err(invalid(format!("`{s}` is not an EC2 architecture"), hint))
}

/// An IPv4 or IPv6 CIDR block such as `203.0.113.0/24`.
pub fn cidr(s: &str) -> Result<(), Invalid> {
    let bad = || {
        invalid(
            format!("`{s}` is not a CIDR block"),
            "write an address and prefix length, e.g. 203.0.113.0/24 or 0.0.0.0/0",
        )
    };
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(())
}

/// Characters EC2 accepts in an AMI name (3 to 128 of them).
pub fn ami_name(s: &str) -> Result<(), Invalid> {
    let bad: Vec<char> = s
        .chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
        .collect();
    if !bad.is_empty() {
        let mut shown: Vec<String> = bad.iter().map(|c| format!("`{c}`")).collect();
        shown.dedup();
        return Err(invalid(
            format!(
                "image name `{s}` has characters EC2 does not allow: {}",
                shown.join(" ")
            ),
            "an AMI name may hold letters, digits, spaces and ( ) [ ] . / - ' @ _",
        ));
    }
    if !(3..=128).contains(&s.chars().count()) {
        return Err(invalid(
            format!("image name `{s}` is {} characters long", s.chars().count()),
            "an AMI name is 3 to 128 characters long",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(region("eu-west-1"), Ok(None));
        let e = region("eu-wset-1").unwrap_err();
        assert_eq!(e.message, "`eu-wset-1` is not an AWS region");
        assert_eq!(e.hint, "did you mean `eu-west-1`?");
        assert!(region("eu-west-9").unwrap().is_some());
        assert!(region("EU-WEST-1").is_err());
    }

    #[test]
    fn kms_keys() {
        for ok in [
            "alias/ami",
            "alias/aws/ebs",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:111111111111:alias/ami",
        ] {
            assert_eq!(kms_key(ok, Some("eu-west-1")), Ok(()), "{ok}");
        }
        assert!(kms_key("ami", None).is_err());
        assert!(kms_key("alias/", None).is_err());
        assert!(kms_key("1234abcd-12ab", None).is_err());
        assert!(kms_key("arn:aws:kms:eu-west-1:111111111111:key/nope", None).is_err());
        let e = kms_key(
            "arn:aws:kms:us-east-1:111111111111:alias/ami",
            Some("eu-west-1"),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "KMS key `arn:aws:kms:us-east-1:111111111111:alias/ami` is in us-east-1, but this copy goes to eu-west-1"
        );
    }

    #[test]
    fn accounts_and_arns() {
        assert!(account_id("111111111111").is_ok());
        assert!(account_id("11111111111").is_err());
        assert!(account_id("11111111111a").is_err());
        assert_eq!(
            role_arn("arn:aws:iam::222222222222:role/bakery/copy").unwrap(),
            "222222222222"
        );
        assert!(role_arn("arn:aws:iam::2222:role/x").is_err());
        assert!(role_arn("arn:aws:iam::222222222222:user/x").is_err());
        assert!(
            organization_arn("arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5")
                .is_ok()
        );
        assert!(organization_arn("o-a1b2c3d4e5").is_err());
        assert!(organizational_unit_arn(
            "arn:aws:organizations::111111111111:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56"
        )
        .is_ok());
    }

    #[test]
    fn other_shapes() {
        assert!(ami_id("ami-0123456789abcdef0").is_ok());
        assert!(ami_id("ami-123").is_err());
        assert!(subnet_id("subnet-0123abcd").is_ok());
        assert!(instance_type("t3.small").is_ok());
        assert!(instance_type("t3small").is_err());
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("::/0").is_ok());
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0.0").is_err());
        assert_eq!(volume_type("gp4").unwrap_err().hint, "did you mean `gp3`?");
        assert!(ami_name("base-ubuntu release-0.1.0 (x86_64)").is_ok());
        assert!(ami_name("a+b").is_err());
        assert!(ami_name("ab").is_err());
        assert_eq!(
            architecture("amd64").unwrap_err().hint,
            "EC2 calls it `x86_64`"
        );
    }
}
