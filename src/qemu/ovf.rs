//! The OVF descriptor of an OVA: References, DiskSection, NetworkSection and one
//! VirtualSystem with its hardware (CPUs, memory, a SCSI controller with the disk, a
//! network card). Pure text.
//!
//! OVF 2.0 (DSP0243 2.x, namespace `http://schemas.dmtf.org/ovf/envelope/2`) with a SHA256
//! manifest. SHA256 because vSphere 8 refuses SHA1 manifests ("Invalid OVF checksum
//! algorithm: SHA1") and VirtualBox writes SHA256 with OVF 2.0 itself; the two go together
//! in the tools that read OVAs (ovftool, vSphere content library, VirtualBox), so the
//! descriptor says 2.0 when the manifest says SHA256.

use super::plan::BootPlan;

pub const OVF_NAMESPACE: &str = "http://schemas.dmtf.org/ovf/envelope/2";
/// The disk format OVF names for a streamOptimized VMDK.
pub const VMDK_STREAM_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";
/// The network the card connects to; importers map it to one of theirs.
pub const NETWORK_NAME: &str = "VM Network";
/// CIM operating system id 96: "Debian 64-Bit"; 101 is "Other Linux 64-Bit".
pub const OS_OTHER_LINUX_64: u32 = 101;

/// What the descriptor describes.
#[derive(Debug, Clone)]
pub struct Descriptor {
    /// The virtual system's name (the artifact stem).
    pub name: String,
    /// The disk file's name inside the OVA.
    pub disk_file: String,
    /// The disk file's size in bytes.
    pub disk_file_size: u64,
    /// The disk's virtual size in bytes.
    pub capacity: u64,
    pub cpus: u32,
    pub memory_mb: u64,
    pub boot: BootPlan,
    /// A line of text shown by importers (recipe, version).
    pub annotation: String,
}

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => {}
            c => o.push(c),
        }
    }
    o
}

/// The descriptor's XML.
pub fn descriptor(d: &Descriptor) -> String {
    let name = xml_escape(&d.name);
    let href = xml_escape(&d.disk_file);
    let annotation = xml_escape(&d.annotation);
    let firmware = match d.boot {
        BootPlan::Uefi => {
            "\n      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>"
        }
        _ => "",
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="{ns}" xmlns:ovf="{ns}" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:id="file1" ovf:href="{href}" ovf:size="{size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:format="{fmt}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks</Info>
    <Network ovf:name="{net}">
      <Description>The network the virtual machine's card connects to</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <AnnotationSection>
      <Info>About this image</Info>
      <Annotation>{annotation}</Annotation>
    </AnnotationSection>
    <OperatingSystemSection ovf:id="{os}">
      <Info>The guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14 virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{mem} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{net}</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "{net}"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>{firmware}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        ns = OVF_NAMESPACE,
        size = d.disk_file_size,
        capacity = d.capacity,
        fmt = VMDK_STREAM_FORMAT,
        net = NETWORK_NAME,
        os = OS_OTHER_LINUX_64,
        cpus = d.cpus,
        mem = d.memory_mb,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(boot: BootPlan) -> Descriptor {
        Descriptor {
            name: "web-release-1.0".into(),
            disk_file: "web-release-1.0.vmdk".into(),
            disk_file_size: 123_456,
            capacity: 8 << 30,
            cpus: 2,
            memory_mb: 2048,
            boot,
            annotation: "web release-1.0 <built by bakery> & sealed".into(),
        }
    }

    /// The text between `<tag` and `</tag>` (or the self-closing element).
    fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
        let start = xml
            .find(&format!("<{tag}"))
            .unwrap_or_else(|| panic!("no <{tag}>"));
        let rest = &xml[start..];
        let end = rest
            .find(&format!("</{tag}>"))
            .map(|e| e + tag.len() + 3)
            .unwrap_or_else(|| rest.find("/>").unwrap() + 2);
        &rest[..end]
    }

    #[test]
    fn the_sections_an_importer_reads() {
        let x = descriptor(&sample(BootPlan::Bios));
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/2\""));
        assert_eq!(
            element(&x, "File"),
            r#"<File ovf:id="file1" ovf:href="web-release-1.0.vmdk" ovf:size="123456"/>"#
        );
        assert_eq!(
            element(&x, "Disk "),
            format!(
                r#"<Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="8589934592" ovf:capacityAllocationUnits="byte" ovf:format="{VMDK_STREAM_FORMAT}"/>"#
            )
        );
        assert!(element(&x, "NetworkSection").contains(r#"<Network ovf:name="VM Network">"#));
        let hw = element(&x, "VirtualHardwareSection");
        for (rtype, quantity) in [
            ("3", Some("2")),
            ("4", Some("2048")),
            ("6", None),
            ("17", None),
            ("10", None),
        ] {
            let item = hw
                .split("<Item>")
                .find(|i| i.contains(&format!("<rasd:ResourceType>{rtype}</rasd:ResourceType>")))
                .unwrap_or_else(|| panic!("no item of type {rtype}"));
            if let Some(q) = quantity {
                assert!(
                    item.contains(&format!("<rasd:VirtualQuantity>{q}</rasd:VirtualQuantity>")),
                    "{item}"
                );
            }
        }
        assert!(hw.contains("<rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>"));
        assert!(hw.contains("<rasd:Connection>VM Network</rasd:Connection>"));
        assert!(!x.contains("firmware"));
        // Every element that opens closes: the document nests.
        assert_eq!(x.matches("<Item>").count(), x.matches("</Item>").count());
    }

    #[test]
    fn text_is_escaped_and_uefi_is_declared() {
        let x = descriptor(&sample(BootPlan::Uefi));
        assert!(x.contains(
            "<Annotation>web release-1.0 &lt;built by bakery&gt; &amp; sealed</Annotation>"
        ));
        assert!(x.contains(r#"vmw:key="firmware" vmw:value="efi""#));
        assert_eq!(xml_escape("a\"b'c\u{1}"), "a&quot;b&apos;c");
    }
}
